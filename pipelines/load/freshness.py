"""Source freshness, as dbt users know it: how old each source's newest row is on the
as-of date, against the source's ``warn_after_days`` and ``error_after_days``.

:func:`check_freshness` runs in the core step, once the as-of date is known: it records
one row per checked source in ``audit.source_freshness`` and stops the run, before
anything is published, when a source is past its ``error_after_days``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb

from pipelines.config import Settings, SourceConfig
from pipelines.errors import InputError
from pipelines.sqlrun import ensure_bookkeeping_tables

# Per source: the core table of its validated rows and the UTC timestamp that dates a
# row. Transactions are dated per line (core.transaction_lines), as delivered:
# core.transactions dates an order by its earliest line, so a later line would not count.
# Customer records are dated by their last update, else their signup.
NEWEST_ROW: dict[str, tuple[str, str]] = {
    "transactions": ("core.transaction_lines", "order_at"),
    "events": ("core.events", "event_at"),
    "customers": ("core.customer_records", "coalesce(updated_at, signup_at)"),
}

NOT_PUBLISHED = "Nothing was published."


@dataclass(frozen=True)
class SourceFreshness:
    """One source's freshness on the as-of date: its newest row's timestamp (UTC, None
    when it has no row on or before the as-of date), that row's age in whole days
    (as-of date - the row's date), the source's thresholds in days, the status ('ok',
    'warn' or 'error') and a sentence that explains it."""

    source: str
    newest_at: datetime | None
    age_days: int | None
    warn_after_days: int | None
    error_after_days: int | None
    status: str
    message: str


def check_freshness(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, run_id: str
) -> list[SourceFreshness]:
    """Measure every source that sets ``warn_after_days`` or ``error_after_days``.

    Parameters
    ----------
    con : the warehouse, after the core step built ``core.*`` (the validated rows).
    settings : the run's settings; sources without either key are not checked.
    as_of : the run's as-of date. Rows dated after it are ignored, as the run ignores
        them, so a backfill measures the data it used.
    run_id : the run the rows of ``audit.source_freshness`` belong to.

    Returns
    -------
    One :class:`SourceFreshness` per checked source, in config order. Their rows are in
    ``audit.source_freshness`` (committed) before this raises.

    Raises
    ------
    InputError : a source is past its ``error_after_days``, or has no row at all and sets
        it (a source without rows is infinitely stale).
    """
    results, stale, checks = [], [], []
    for source in settings.sources.values():
        if source.warn_after_days is None and source.error_after_days is None:
            continue
        rows, newest_at = _newest_row(con, source.name, as_of)
        age = (as_of - newest_at.date()).days if newest_at is not None else None
        status = _status(age, source.warn_after_days, source.error_after_days)
        sentence = _describe(source, status, rows, newest_at, age, as_of)
        check = _check(status, newest_at)
        if status == "error":
            stale.append(sentence)
            if check not in checks:
                checks.append(check)
            message = f"{sentence} {NOT_PUBLISHED} {check}"
        else:
            message = f"{sentence} {check}" if check else sentence
        results.append(
            SourceFreshness(
                source=source.name,
                newest_at=newest_at,
                age_days=age,
                warn_after_days=source.warn_after_days,
                error_after_days=source.error_after_days,
                status=status,
                message=message,
            )
        )
    _record(con, run_id, results)
    if stale:
        raise InputError(" ".join([*stale, NOT_PUBLISHED, *checks]))
    return results


def describe_staleness(
    source: str,
    age_days: int | None,
    status: str,
    warn_after_days: int | None,
    error_after_days: int | None,
) -> str:
    """A stale source in a few words, for the run summary and the report: e.g. "events is
    9 days old (warn after 7 days)". ``status`` is 'warn' or 'error'; ages in days."""
    limit = _days(warn_after_days if status == "warn" else error_after_days)
    if age_days is None:
        return f"{source} has no row dated on or before the as-of date ({status} after {limit})"
    return f"{source} is {_days(age_days)} old ({status} after {limit})"


def _newest_row(
    con: duckdb.DuckDBPyConnection, source: str, as_of: date
) -> tuple[int, datetime | None]:
    """(rows of the source in core, the newest timestamp dated on or before ``as_of``)."""
    table, stamp = NEWEST_ROW[source]
    # table and stamp come from NEWEST_ROW above, never from the config
    return con.execute(
        f"select count(*), max({stamp}) filter (where ({stamp})::date <= $as_of) from {table}",
        {"as_of": as_of},
    ).fetchall()[0]


def _status(age: int | None, warn_after: int | None, error_after: int | None) -> str:
    # As dbt's: stale means older than the threshold, so warn_after_days = 0 allows rows
    # of the as-of date only. No row at all is older than any threshold.
    if error_after is not None and (age is None or age > error_after):
        return "error"
    if warn_after is not None and (age is None or age > warn_after):
        return "warn"
    return "ok"


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _describe(
    source: SourceConfig,
    status: str,
    rows: int,
    newest_at: datetime | None,
    age: int | None,
    as_of: date,
) -> str:
    """One sentence: the source's newest row, its age on the as-of date and, when stale,
    the config key it is over."""
    name = source.name
    if status == "ok":
        limits = ", ".join(
            f"{kind} after {_days(days)}"
            for kind, days in (("warn", source.warn_after_days), ("error", source.error_after_days))
            if days is not None
        )
        return (
            f"Source '{name}' is fresh: its newest row is from {newest_at.date()}, "
            f"{_days(age)} before the as-of date {as_of} ({limits})."
        )
    key = f"{status}_after_days"
    over = f"over [sources.{name}].{key} = {getattr(source, key)}"
    if newest_at is None:
        table = NEWEST_ROW[name][0]
        what = (
            f"it has no rows in {table}"
            if rows == 0
            else f"none of its {rows} rows in {table} is dated on or before {as_of}"
        )
        return f"Source '{name}' is stale: {what}, so it counts as infinitely old, {over}."
    return (
        f"Source '{name}' is stale: its newest row is from {newest_at.date()}, "
        f"{_days(age)} before the as-of date {as_of}, {over}."
    )


def _check(status: str, newest_at: datetime | None) -> str:
    """What to look at for a stale source ('' for a fresh one)."""
    if status == "ok":
        return ""
    if newest_at is None:
        # raising the threshold cannot help a source without rows
        return "Check that its export arrived and its rows passed validation."
    return f"Check that today's export arrived, or raise {status}_after_days."


def _record(con: duckdb.DuckDBPyConnection, run_id: str, results: list[SourceFreshness]) -> None:
    """Replace the run's rows of ``audit.source_freshness`` in one transaction, so a run
    stopped by a stale source has its reason in the warehouse."""
    ensure_bookkeeping_tables(con)
    checked_at = datetime.now(UTC).replace(tzinfo=None)
    con.execute("begin transaction")
    try:
        con.execute("delete from audit.source_freshness where run_id = ?", [run_id])
        if results:
            con.executemany(
                "insert into audit.source_freshness values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        run_id,
                        r.source,
                        r.newest_at,
                        r.age_days,
                        r.warn_after_days,
                        r.error_after_days,
                        r.status,
                        r.message,
                        checked_at,
                    ]
                    for r in results
                ],
            )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
