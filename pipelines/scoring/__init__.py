"""Scoring: moves tables between DuckDB and models/ -> models.* (value, churn, segments, the model log)."""
