"""Load: export files -> raw.* (ingest, readers) -> staging.* (clean) -> quarantine.* (quality)."""
