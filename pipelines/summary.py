"""The short text summary printed at the end of ``crm run``."""

from __future__ import annotations

import duckdb


def format_summary(con: duckdb.DuckDBPyConnection, run_id: str, as_of) -> str:
    """Rows per source, quarantined by rule, duplicates, customers unified; per file the
    reconciliation rows read = loaded + quarantined + duplicates."""
    lines = [f"Run {run_id}, as of {as_of}"]
    lines.append("")
    lines.append("Files (rows read = loaded + quarantined + duplicates):")
    for source, path, status, read, loaded, quarantined, dup, ok in con.execute("""
            select source, file_path, status, rows_read, rows_loaded, rows_quarantined,
                   rows_duplicate, is_balanced
            from audit.file_reconciliation order by source, file_path""").fetchall():
        name = path.rsplit("/", 1)[-1]
        mark = "ok" if ok else "UNBALANCED"
        lines.append(f"  {source:<12} {name:<32} {status:<16} {read:>9} = {loaded:>9} + "
                     f"{quarantined:>6} + {dup:>6}  {mark}")
    redelivered = con.execute("""
        select source, file_path from raw.deliveries
        where run_id = (select max(run_id) from raw.deliveries) and status = 'already_ingested'
        """).fetchall()
    for source, path in redelivered:
        lines.append(f"  {source:<12} {path.rsplit('/', 1)[-1]:<32} already ingested: nothing added")
    rules = con.execute("""
        select source, rule, count(*) from (
            select 'transactions' as source, unnest(string_split(rules, ', ')) as rule
            from quarantine.transactions
            union all select 'customers', unnest(string_split(rules, ', ')) from quarantine.customers
            union all select 'events', unnest(string_split(rules, ', ')) from quarantine.events
            union all select source, 'reader: ' || split_part(reason, ':', 1) from raw.rejected_rows
        ) group by all order by 1, 3 desc""").fetchall()
    lines.append("")
    lines.append("Quarantined rows by rule:" if rules else "Quarantined rows: none")
    for source, rule, n in rules:
        lines.append(f"  {source:<12} {rule:<40} {n:>8}")
    fields = con.execute("select source, rule, count(*) from quarantine.field_issues "
                         "group by all order by 1, 3 desc").fetchall()
    if fields:
        lines.append("Fields blanked (row kept):")
        for source, rule, n in fields:
            lines.append(f"  {source:<12} {rule:<40} {n:>8}")
    dups = con.execute("select source, reason, count(*) from core.duplicate_rows "
                       "group by all order by 1").fetchall()
    lines.append("Duplicates removed:" if dups else "Duplicates removed: none")
    for source, reason, n in dups:
        lines.append(f"  {source:<12} {reason:<40} {n:>8}")
    ids, customers, merged = con.execute("""
        select count(*), count(distinct customer_id), count(*) filter (where match_rule <> 'self')
        from core.customer_map""").fetchone()
    orders, events = con.execute("select (select count(*) from core.transactions), "
                                 "(select count(*) from core.events)").fetchone()
    lines.append("")
    lines.append(f"Customers: {ids} source ids -> {customers} customers "
                 f"({merged} duplicate records unified)")
    lines.append(f"Orders: {orders}   Events: {events}")
    return "\n".join(lines)
