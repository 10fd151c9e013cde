"""Reading the report's rows from the warehouse, and small helpers over them.

One run's rows of a published table (:func:`_load`: a table or rows that are absent come
back as no rows and a one-sentence reason, never an error), the status of each model the
run tried (:func:`_model_runs`), and the display order of segments. Used by the section
builders in :mod:`pipelines.publish.report_sections` and
:mod:`pipelines.publish.report_model_sections`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import duckdb

from pipelines.publish.formatting import label

log = logging.getLogger(__name__)

# segment_summary's segment for customers without a value in a dimension (prospects).
UNASSIGNED = "unassigned"


# --------------------------------------------------------------------------- reading


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    return (
        con.execute(
            "select count(*) from information_schema.tables where table_catalog = current_database() "
            "and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
        > 0
    )


def _records(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> list[dict]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _table_columns(con: duckdb.DuckDBPyConnection, qualified: str) -> set[str]:
    schema, table = qualified.split(".")
    return {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_catalog = "
            "current_database() and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }


def _load(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    run_id: str,
    order_by: str | None = None,
    optional: Sequence[str] = (),
) -> tuple[list[dict], str | None]:
    """One run's rows of ``table`` (a fixed, schema-qualified name), or no rows and why.
    ``optional`` columns read as NULL when the table lacks them (an older warehouse)."""
    if not _table_exists(con, table):
        return [], f"{table} is not in the warehouse (the step that builds it did not run)"
    present = _table_columns(con, table)
    selected = list(columns) + [c if c in present else f"null as {c}" for c in optional]
    sql = f"select {', '.join(selected)} from {table} where run_id = $run_id"
    if order_by:
        sql += f" order by {order_by}"
    try:
        rows = _records(con, sql, {"run_id": run_id})
    except duckdb.Error as exc:
        log.warning("report: cannot read %s: %s", table, exc)
        return [], f"{table} could not be read ({str(exc).splitlines()[0]})"
    if not rows:
        return [], f"{table} has no rows for run {run_id}"
    return rows, None


def _model_runs(metrics: list[dict]) -> dict[str, dict]:
    """Status and message per model the run tried, from the ``is_fitted`` rows of
    marts.model_metrics (message ``<status>: <reason>``, e.g. ``skipped: 3 repeat buyers``)."""
    runs = {}
    for m in metrics:
        if m["metric"] == "is_fitted":
            status, _, message = (m.get("message") or "").partition(": ")
            runs[m["model"]] = {
                "status": status or ("fitted" if m["value"] else "not fitted"),
                "message": message or None,
            }
    return runs


def _run_header(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows, _ = _load(con, "audit.runs", ("started_at",), run_id)
    return rows[0] if rows else {"started_at": None}


def _ordered(rows: list[dict], order: Sequence[str] = ()) -> list[dict]:
    """Known values in ``order`` first, then the rest by customers (largest first), then
    the customers without a value."""
    rank = {value: i for i, value in enumerate(order)}
    return sorted(
        rows,
        key=lambda r: (
            r["segment"] in (None, UNASSIGNED),
            rank.get(r["segment"], len(rank)),
            -(r["customers"] or 0),
            str(r["segment"]),
        ),
    )


def _metric_cells(metrics: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["model"], m["metric"]): m for m in metrics}


def _why(runs: dict[str, dict], model: str) -> str | None:
    run = runs.get(model)
    if run is None or not run.get("message"):
        return None
    return f"{label(model)} {run['status']}: {run['message'].rstrip('.')}"
