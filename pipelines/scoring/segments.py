"""Segments step: value tier, lifecycle stage and recommended action per customer known at
the as-of date, into ``models.customer_segments``. The rules are ``models/segments.py``;
this module only moves frames between DuckDB and them."""

from __future__ import annotations

from datetime import date

import duckdb

from models import segments
from pipelines.config import Settings
from pipelines.sqlrun import run_sql


def build_customer_segments(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date
) -> dict[str, dict[str, int]]:
    """Tier, lifecycle stage and recommended action per customer known at ``as_of``, into
    ``models.customer_segments``. Needs ``models.rfm*``, ``models.clv_predictions`` and
    ``models.churn_scores``. Returns counts per tier, stage and action."""
    run_sql(con, "models/segment_inputs", {"as_of": as_of})
    inputs = con.sql("select * from models.segment_inputs order by customer_id").pl()
    rules = settings.rules
    segmented = segments.segment_customers(
        inputs, as_of=as_of, tiers=rules.tiers, lifecycle=rules.lifecycle, playbook=rules.playbook
    )
    con.register(
        "_segments",
        segmented.select("customer_id", "value_tier", "lifecycle_stage", "recommended_action"),
    )
    con.execute("create or replace table models.customer_segments as select * from _segments")
    con.unregister("_segments")
    return {
        column: dict(
            con.execute(
                f"select {column}, count(*) from models.customer_segments "
                "group by all order by 2 desc"
            ).fetchall()
        )
        for column in ("value_tier", "lifecycle_stage", "recommended_action")
    }
