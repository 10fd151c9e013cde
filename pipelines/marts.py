"""Build the published tables (``marts.*``) from ``core.*`` and ``models.*``."""

from __future__ import annotations

from datetime import date

import duckdb

from pipelines.errors import StepError
from pipelines.sqlrun import run_sql


def build_customer_360(con: duckdb.DuckDBPyConnection, as_of: date, run_id: str) -> int:
    """``marts.customer_360``: one row per customer known at ``as_of``; returns its rows."""
    resolution = con.execute("select any_value(resolution) from models.clv_summary"
                             ).fetchall()[0][0] or "exact"
    run_sql(con, "marts/customer_360", {"as_of": as_of, "run_id": run_id,
                                        "resolution": resolution})
    rows, distinct = con.execute("select count(*), count(distinct customer_id) "
                                 "from marts.customer_360").fetchall()[0]
    if rows != distinct:
        raise StepError(f"marts.customer_360 has {rows} rows for {distinct} customers; a "
                        "join fanned out. Nothing was published; please report this bug.")
    return rows
