"""Core: deduplication, identity resolution and reconciliation -> core.*."""
