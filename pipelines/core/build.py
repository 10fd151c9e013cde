"""Build the core layer: one record per customer, deduplicated orders and events."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from pipelines.core.identity import IdentityReport, resolve_identities
from pipelines.errors import StepError
from pipelines.sqlrun import ensure_bookkeeping_tables, has_table, run_sql

CORE_ORDER = (
    "core/transaction_lines",
    "core/transactions",
    "core/customers",
    "core/events",
    "core/duplicate_rows",
)


# the core table that keeps each source's valid rows
KEPT_ROWS_TABLE = {
    "transactions": "core.transaction_lines",
    "customers": "core.customer_records",
    "events": "core.events",
}


def _dropped_rows_params(con: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """``find_<source>``: whether core kept fewer rows of the source than passed
    validation. Kept rows are a subset of the valid ones (staging rows less quarantined
    ones, each a distinct key), so equal counts mean no duplicate to look for."""
    params = {}
    for source, kept_table in KEPT_ROWS_TABLE.items():
        staged, quarantined, kept = con.execute(
            f"select (select count(*) from staging.{source}), "
            f"(select count(*) from quarantine.{source}), "
            f"(select count(*) from {kept_table})"
        ).fetchall()[0]
        params[f"find_{source}"] = staged - quarantined != kept
    return params


@dataclass(frozen=True)
class CoreReport:
    identity: IdentityReport
    orders: int
    customers: int
    events: int
    duplicates_by_source: dict[str, int]


def build_core_tables(con: duckdb.DuckDBPyConnection) -> IdentityReport:
    """Resolve identities and build the ``core.*`` tables of :data:`CORE_ORDER` from the
    validated ``staging.*`` and ``quarantine.*``; returns the identity report."""
    # audit.erased_rows, which reconciliation reads, exists before any erasure
    ensure_bookkeeping_tables(con)
    identity = resolve_identities(con)
    for name in CORE_ORDER:
        params = _dropped_rows_params(con) if name == "core/duplicate_rows" else None
        run_sql(con, name, params)
    return identity


def build_core(con: duckdb.DuckDBPyConnection, run_id: str) -> CoreReport:
    """Build every ``core.*`` table and ``audit.file_reconciliation``.

    Stops the run if any file's rows read differ from loaded + quarantined + duplicates:
    that would mean a row was lost, which no published number may rest on.
    """
    had_map = has_table(con, "core", "customer_map")
    if had_map:
        con.execute(
            "create or replace temp table previous_customer_map as "
            "select source_customer_id, customer_id from core.customer_map"
        )
    identity = build_core_tables(con)
    if had_map:
        run_sql(con, "audit/customer_id_changes", {"run_id": run_id})
        con.execute("drop table temp.main.previous_customer_map")
    run_sql(con, "audit/file_reconciliation", {"run_id": run_id})
    con.execute("""
        create table if not exists audit.reconciliation_history as
        select * from audit.file_reconciliation limit 0""")
    for column, kind in con.execute("""
            select column_name, data_type from information_schema.columns
            where table_schema = 'audit' and table_name = 'file_reconciliation'
              and column_name not in (select column_name from information_schema.columns
                                      where table_schema = 'audit'
                                        and table_name = 'reconciliation_history')""").fetchall():
        con.execute(f"alter table audit.reconciliation_history add column {column} {kind}")
    con.execute(
        "insert into audit.reconciliation_history by name select * from audit.file_reconciliation"
    )
    unbalanced = con.execute("""
        select file_path, rows_read, rows_loaded, rows_quarantined, rows_duplicate,
               rows_erased
        from audit.file_reconciliation where not is_balanced""").fetchall()
    if unbalanced:
        path, read, loaded, quarantined, duplicate, erased = unbalanced[0]
        raise StepError(
            f"Reconciliation failed for {path}: {read} rows read but {loaded} "
            f"loaded + {quarantined} quarantined + {duplicate} duplicates + "
            f"{erased} erased. "
            "Nothing was published. This is a bug; please report it with the file."
        )
    orders, customers, events = con.execute("""
        select (select count(*) from core.transactions), (select count(*) from core.customers),
               (select count(*) from core.events)""").fetchall()[0]
    dups = dict(
        con.execute("select source, count(*) from core.duplicate_rows group by all").fetchall()
    )
    return CoreReport(identity, orders, customers, events, dups)
