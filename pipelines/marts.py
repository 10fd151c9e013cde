"""Build the published tables (``marts.*``) from ``core.*`` and ``models.*``.

``marts.customer_360`` holds the current run only. The other marts are history tables:
every run's rows are kept so dashboards can trend, and a rerun with the same run_id
replaces its own rows. ``sql/marts/<table>.sql`` builds one run's rows in the temporary
table ``temp.main.<table>_run``; they are checked here, then swapped into
``marts.<table>`` in one transaction, so a failed check leaves the history untouched.

Monthly KPIs (``marts.kpi_monthly``; docs/kpis.md has the reasoning). A(m) = customers
with a completed order in UTC month m, counting only data on or before as_of:

- new: first completed order ever in m; returning: in A(m), not new;
- repeat_purchase_rate: share of A(m) with >= 2 completed orders in m;
- retention_rate: |A(m-1) and A(m)| / |A(m-1)|; churn_rate: 1 - retention_rate (both NULL
  when A(m-1) is empty);
- revenue: gross sum of completed order amounts; average_order_value: revenue / orders;
- average_predicted_clv: mean customer_360.predicted_clv, on the as-of month row only;
- nps: % promoters (9-10) - % detractors (0-6) of NPS responses, in percentage points;
- csat: share of CSAT responses scoring 4 or 5 (0-1);
- complaint_rate: complaint events per completed order (can exceed 1);
- median_first_response_hours: median value of support_ticket events;
- is_partial_month: the as-of month when as_of is not its last day.
"""

from __future__ import annotations

import logging
import re
from datetime import date

import duckdb

from pipelines.errors import StepError
from pipelines.sqlrun import run_sql

log = logging.getLogger(__name__)

# The readable DAG: customer_360 first (segment_summary and kpi_monthly read it), then
# the history tables. Every name here is also the table's SQL file and its mart.
MARTS_ORDER = ("customer_360", "segment_summary", "kpi_monthly", "data_quality",
               "model_parameters", "model_metrics")
HISTORY_TABLES = MARTS_ORDER[1:]

# One row per run_id and these columns (docs/marts.md).
GRAINS = {
    "segment_summary": ("dimension", "segment"),
    "kpi_monthly": ("month",),
    "data_quality": ("source", "file_sha256", "measure", "rule"),
    "model_parameters": ("model", "parameter"),
    "model_metrics": ("model", "metric"),
}

# (what is wrong, condition true for a bad row) per history table; NULLs pass.
INVARIANTS = {
    "kpi_monthly": (
        ("repeat_purchase_rate outside [0, 1]", "not repeat_purchase_rate between 0 and 1"),
        ("retention_rate outside [0, 1]", "not retention_rate between 0 and 1"),
        ("churn_rate outside [0, 1]", "not churn_rate between 0 and 1"),
        ("csat outside [0, 1]", "not csat between 0 and 1"),
        ("nps outside [-100, 100]", "not nps between -100 and 100"),
        ("retention_rate + churn_rate is not 1", "abs(retention_rate + churn_rate - 1) > 1e-9"),
        ("retention_rate and churn_rate are not both set or both NULL",
         "(retention_rate is null) <> (churn_rate is null)"),
        ("active_customers is not new_customers + returning_customers",
         "active_customers <> new_customers + returning_customers"),
        ("a count or amount is negative",
         "least(active_customers, new_customers, returning_customers, orders, revenue, "
         "complaint_rate) < 0"),
    ),
    "segment_summary": (
        ("share_of_customers outside [0, 1]", "not share_of_customers between 0 and 1"),
        ("consenting_customers exceed customers", "consenting_customers > customers"),
        ("average_churn_probability outside [0, 1]",
         "not average_churn_probability between 0 and 1"),
    ),
    "data_quality": (
        ("a count is negative", "rows < 0"),
    ),
}

_EXPECTED_PURCHASES = re.compile(r"expected_purchases_(\d+)d")


def build_customer_360(con: duckdb.DuckDBPyConnection, as_of: date, run_id: str,
                       clv_resolution: str) -> int:
    """``marts.customer_360``: one row per customer known at ``as_of``, with the BG/NBD
    summary of ``clv_resolution`` (the one the value step fitted); returns its rows."""
    run_sql(con, "marts/customer_360", {"as_of": as_of, "run_id": run_id,
                                        "resolution": clv_resolution})
    rows, distinct = con.execute("select count(*), count(distinct customer_id) "
                                 "from marts.customer_360").fetchall()[0]
    if rows != distinct:
        raise StepError(f"marts.customer_360 has {rows} rows for {distinct} customers; a "
                        "join fanned out. Nothing was published; please report this bug.")
    return rows


def build_marts(con: duckdb.DuckDBPyConnection, as_of: date, run_id: str,
                clv_resolution: str) -> dict[str, int]:
    """Build every ``marts.*`` table in :data:`MARTS_ORDER` and document its columns.

    Needs ``core.*``, ``models.*`` (the value, churn and segment steps of this run),
    ``raw.files``, ``raw.rejected_rows``, ``quarantine.*`` and ``audit.file_reconciliation``.
    Returns rows per table: all of ``customer_360``; this run's rows of each history table.
    Raises :class:`StepError` when a table breaks an invariant (a share outside [0, 1],
    two rows for one key, a column without a description); history is then unchanged.
    """
    rows = {"customer_360": build_customer_360(con, as_of, run_id, clv_resolution)}
    for table in HISTORY_TABLES:
        rows[table] = build_history_table(con, table, as_of, run_id)
    comment_marts(con)
    log.info("marts rows: %s", rows)
    return rows


def build_history_table(con: duckdb.DuckDBPyConnection, table: str, as_of: date,
                        run_id: str) -> int:
    """Build this run's rows of history table ``marts.<table>``, check them, and replace the
    table's rows of ``run_id`` with them; returns how many rows the run has."""
    if table not in HISTORY_TABLES:
        raise ValueError(f"{table!r} is not a history table; known: {HISTORY_TABLES}")
    run_sql(con, f"marts/{table}", {"as_of": as_of, "run_id": run_id})
    check_run_rows(con, table)
    return replace_run_rows(con, table, run_id)


def check_run_rows(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Raise :class:`StepError` if this run's rows of ``marts.<table>`` (in
    ``temp.main.<table>_run``) repeat a key of the table's grain or break an invariant."""
    staged = f"temp.main.{table}_run"
    keys = ", ".join(GRAINS[table])
    repeated = con.execute(f"select {keys}, count(*) from {staged} group by all "
                           "having count(*) > 1 limit 1").fetchall()
    if repeated:
        raise StepError(f"marts.{table} would have {repeated[0][-1]} rows for one "
                        f"({keys}) = {repeated[0][:-1]} in one run; its inputs hold duplicates. "
                        "Nothing was published; please report this bug.")
    for problem, condition in INVARIANTS.get(table, ()):
        bad = con.execute(f"select * from {staged} where {condition} limit 1").fetchall()
        if bad:
            columns = [c[0] for c in con.execute(f"describe {staged}").fetchall()]
            row = dict(zip(columns, bad[0]))
            key = {k: row[k] for k in GRAINS[table]}
            raise StepError(f"marts.{table}: {problem} at {key} ({row}). The inputs or the "
                            f"definition in sql/marts/{table}.sql are wrong. Nothing was "
                            "published; please report this bug.")
    if table == "segment_summary":
        _check_segments_cover_customers(con)


def _check_segments_cover_customers(con: duckdb.DuckDBPyConnection) -> None:
    """Each dimension must count every customer of marts.customer_360 exactly once."""
    wrong = con.execute("""
        select dimension, sum(customers), (select count(*) from marts.customer_360)
        from temp.main.segment_summary_run group by dimension
        having sum(customers) <> (select count(*) from marts.customer_360)
        limit 1""").fetchall()
    if wrong:
        dimension, counted, customers = wrong[0]
        raise StepError(f"marts.segment_summary counts {counted} customers under dimension "
                        f"{dimension} but marts.customer_360 has {customers}. Nothing was "
                        "published; please report this bug.")


def replace_run_rows(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> int:
    """Swap ``temp.main.<table>_run`` into history table ``marts.<table>``: delete the rows
    of ``run_id``, insert the new ones, in one transaction. Creates the table on first use
    and adds columns a newer definition brings (older runs get NULL there)."""
    staged, target = f"temp.main.{table}_run", f"marts.{table}"
    con.execute("begin transaction")
    try:
        con.execute(f"create table if not exists {target} as select * from {staged} limit 0")
        have = {c[0] for c in con.execute(f"describe {target}").fetchall()}
        for column, dtype, *_ in con.execute(f"describe {staged}").fetchall():
            if column not in have:
                con.execute(f'alter table {target} add column "{column}" {dtype}')
        con.execute(f"delete from {target} where run_id = $run_id", {"run_id": run_id})
        con.execute(f"insert into {target} by name select * from {staged}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    rows = con.execute(f"select count(*) from {target} where run_id = $run_id",
                       {"run_id": run_id}).fetchall()[0][0]
    con.execute(f"drop table if exists {staged}")
    return rows


def comment_marts(con: duckdb.DuckDBPyConnection) -> None:
    """Describe every marts table and column in DuckDB's catalog (``sql/marts/comments.sql``
    plus the configured ``expected_purchases_<h>d`` columns); raise :class:`StepError` if a
    table of :data:`MARTS_ORDER` still has a column without a description."""
    run_sql(con, "marts/comments")
    comment_expected_purchases(con)
    names = ", ".join(f"'{t}'" for t in MARTS_ORDER)
    missing = con.execute(f"""
        select table_name, column_name from duckdb_columns()
        where database_name = current_database() and schema_name = 'marts'
          and table_name in ({names}) and coalesce(comment, '') = ''
        union all
        select table_name, null from duckdb_tables()
        where database_name = current_database() and schema_name = 'marts'
          and table_name in ({names}) and coalesce(comment, '') = ''
        order by all""").fetchall()
    if missing:
        listed = ", ".join(f"marts.{t}" + (f".{c}" if c else " (table)") for t, c in missing)
        raise StepError(f"No description for {listed}. Every published column must be "
                        "documented: add it to sql/marts/comments.sql and docs/marts.md.")


def comment_expected_purchases(con: duckdb.DuckDBPyConnection) -> None:
    """Describe the ``expected_purchases_<h>d`` columns of ``marts.customer_360``; their
    horizons come from the config, so they cannot be listed in comments.sql."""
    columns = [c[0] for c in con.execute("describe marts.customer_360").fetchall()]
    for column in columns:
        match = _EXPECTED_PURCHASES.fullmatch(column)
        if match is None:
            continue
        days = int(match.group(1))  # digits only: safe to put in the statement
        con.execute(f"comment on column marts.customer_360.{column} is 'Expected number of "
                    f"completed orders in the {days} days after as_of (BG/NBD); NULL when "
                    "the model was not fitted.'")
