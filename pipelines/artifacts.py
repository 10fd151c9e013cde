"""The tables a finished run shows in Prefect's UI as artifacts (``flows.py`` publishes
them): plain queries of the working warehouse, so they are tested without Prefect.

Each function returns a list of rows (dicts with the same keys), the shape Prefect's
``create_table_artifact`` takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

Rows = list[dict[str, Any]]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> Rows:
    result = con.execute(sql, params or {})
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def reconciliation_rows(con: duckdb.DuckDBPyConnection) -> Rows:
    """One row per ingested file (``audit.file_reconciliation``): rows read = loaded +
    quarantined + duplicates + erased, and whether that balances."""
    return _rows(
        con,
        """
        select source, file_path, status, rows_read, rows_loaded, rows_quarantined,
               rows_duplicate, rows_erased, is_balanced
        from audit.file_reconciliation order by source, file_path""",
    )


def quarantine_rows(con: duckdb.DuckDBPyConnection) -> Rows:
    """Rows quarantined (``kept = false``) and fields blanked in kept rows (``kept =
    true``), per source and rule, most frequent first."""
    return _rows(
        con,
        """
        select source, rule, false as kept, count(*) as rows from (
            select 'transactions' as source, unnest(string_split(rules, ', ')) as rule
            from quarantine.transactions
            union all select 'customers', unnest(string_split(rules, ', ')) from quarantine.customers
            union all select 'events', unnest(string_split(rules, ', ')) from quarantine.events
            union all select source, 'reader: ' || split_part(reason, ':', 1) from raw.rejected_rows
        ) group by all
        union all
        select source, rule, true, count(*) from quarantine.field_issues group by all
        order by kept, source, rows desc, rule""",
    )


def model_verdict_rows(con: duckdb.DuckDBPyConnection, run_id: str) -> Rows:
    """Per model of run ``run_id`` (``marts.model_metrics``): whether it was fitted (the
    status and reason), and each metric that has a naive baseline next to it."""
    return _rows(
        con,
        """
        select model, metric, value, baseline, message
        from marts.model_metrics
        where run_id = $run_id and (metric = 'is_fitted' or baseline is not null)
        order by model, metric <> 'is_fitted', metric""",
        {"run_id": run_id},
    )


def output_links(published: dict[str, str]) -> dict[str, str]:
    """``file://`` links to the report and the exports directory of a publish step's
    result (``{"exports": dir, "report": path, ...}``), by what they point at."""
    return {
        name: Path(published[name]).resolve().as_uri()
        for name in ("report", "exports")
        if published.get(name)
    }
