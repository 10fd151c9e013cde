"""Tests for pipelines/load/freshness.py: each source's newest validated row against the
as-of date, on hand-made core tables in an in-memory DuckDB."""

from __future__ import annotations

import re
from datetime import date, datetime

import duckdb
import pytest

from pipelines.config import settings_from_dict
from pipelines.errors import InputError
from pipelines.load.freshness import SourceFreshness, check_freshness

AS_OF = date(2024, 3, 13)
RUN_ID = "run-1"


def _settings(tmp_path, **days):
    """Settings with the three sources; ``days`` like ``transactions=(warn, error)``."""
    sources = {
        "transactions": {
            "path": "tx.csv",
            "columns": {"customer_id": "c", "order_ts": "t", "amount": "a"},
        },
        "events": {
            "path": "ev.jsonl",
            "columns": {"customer_id": "c", "event_ts": "t", "event_type": "e"},
        },
        "customers": {
            "path": "c.csv",
            "columns": {"customer_id": "c", "signup_ts": "s", "updated_at": "u"},
        },
    }
    for name, (warn, error) in days.items():
        for key, value in (("warn_after_days", warn), ("error_after_days", error)):
            if value is not None:
                sources[name][key] = value
    return settings_from_dict({"sources": sources}, base_dir=tmp_path)


@pytest.fixture
def con():
    """Empty core tables with the columns freshness reads (and a few besides)."""
    connection = duckdb.connect(":memory:")
    connection.execute("""
        create schema core;
        create table core.transaction_lines (customer_id varchar, order_id varchar,
            amount double, order_at timestamp);
        create table core.events (customer_id varchar, event_type varchar, event_at timestamp);
        create table core.customer_records (customer_id varchar, signup_at timestamp,
            updated_at timestamp);
    """)
    yield connection
    connection.close()


def _lines(con, *stamps):
    for i, stamp in enumerate(stamps):
        con.execute(
            "insert into core.transaction_lines values ('c1', ?, 5.0, ?::timestamp)",
            [f"o{i}", stamp],
        )


def _events(con, *stamps):
    for stamp in stamps:
        con.execute("insert into core.events values ('c1', 'page_view', ?::timestamp)", [stamp])


def _stored(con, run_id=RUN_ID):
    return con.execute(
        "select source, newest_at, age_days, warn_after_days, error_after_days, status, "
        "message, checked_at is not null from audit.source_freshness where run_id = ? "
        "order by source",
        [run_id],
    ).fetchall()


def test_age_is_whole_days_from_the_newest_rows_date_to_the_as_of_date(con, tmp_path):
    # 23:59 three days back is 3 days old: days are counted by date, not by 24 hours
    _lines(con, "2024-02-01 10:00", "2024-03-10 23:59")
    _events(con, "2024-03-13 00:01", "2024-03-01 09:00")
    con.execute("""insert into core.customer_records values
        ('c1', '2024-03-01 08:00', null),
        ('c2', '2023-01-01 08:00', '2024-03-05 12:00'),
        ('c3', '2024-03-04 08:00', null)""")
    settings = _settings(tmp_path, transactions=(2, 7), events=(0, None), customers=(None, 30))
    results = check_freshness(con, settings, AS_OF, RUN_ID)
    assert [(r.source, r.newest_at, r.age_days, r.status) for r in results] == [
        ("transactions", datetime(2024, 3, 10, 23, 59), 3, "warn"),
        ("events", datetime(2024, 3, 13, 0, 1), 0, "ok"),
        # the latest update wins over a later signup of another customer
        ("customers", datetime(2024, 3, 5, 12, 0), 8, "ok"),
    ]
    assert results[0].message == (
        "Source 'transactions' is stale: its newest row is from 2024-03-10, 3 days before "
        "the as-of date 2024-03-13, over [sources.transactions].warn_after_days = 2. Check "
        "that today's export arrived, or raise warn_after_days."
    )
    assert results[1].message == (
        "Source 'events' is fresh: its newest row is from 2024-03-13, 0 days before the as-of "
        "date 2024-03-13 (warn after 0 days)."
    )
    assert [row[:6] for row in _stored(con)] == [
        ("customers", datetime(2024, 3, 5, 12, 0), 8, None, 30, "ok"),
        ("events", datetime(2024, 3, 13, 0, 1), 0, 0, None, "ok"),
        ("transactions", datetime(2024, 3, 10, 23, 59), 3, 2, 7, "warn"),
    ]
    assert all(row[6] and row[7] for row in _stored(con))  # a message and checked_at


@pytest.mark.parametrize(
    "newest, status",
    [
        ("2024-03-06 12:00", "ok"),  # 7 days old: not over warn_after_days = 7
        ("2024-03-05 12:00", "warn"),  # 8 days
        ("2024-02-29 12:00", "warn"),  # 13 days: not over error_after_days = 13
        ("2024-02-28 12:00", "error"),  # 14 days
    ],
)
def test_a_source_is_stale_only_when_older_than_the_threshold(con, tmp_path, newest, status):
    _lines(con, newest)
    settings = _settings(tmp_path, transactions=(7, 13))
    if status == "error":
        with pytest.raises(InputError):
            check_freshness(con, settings, AS_OF, RUN_ID)
        assert [row[5] for row in _stored(con)] == ["error"]
    else:
        assert [r.status for r in check_freshness(con, settings, AS_OF, RUN_ID)] == [status]


def test_rows_after_the_as_of_date_do_not_make_a_backfill_fresh(con, tmp_path):
    _lines(con, "2024-03-01 10:00", "2024-03-20 10:00")
    [result] = check_freshness(con, _settings(tmp_path, transactions=(5, None)), AS_OF, RUN_ID)
    assert (result.newest_at, result.age_days, result.status) == (
        datetime(2024, 3, 1, 10, 0),
        12,
        "warn",
    )


def test_a_source_past_error_after_days_stops_the_run_after_its_row_is_committed(con, tmp_path):
    _lines(con, "2024-03-01 10:00")
    _events(con, "2024-03-12 10:00")
    settings = _settings(tmp_path, transactions=(3, 7), events=(1, 2))
    message = (
        "Source 'transactions' is stale: its newest row is from 2024-03-01, 12 days before "
        "the as-of date 2024-03-13, over [sources.transactions].error_after_days = 7. "
        "Nothing was published. Check that today's export arrived, or raise error_after_days."
    )
    with pytest.raises(InputError, match=re.escape(message)) as info:
        check_freshness(con, settings, AS_OF, RUN_ID)
    assert str(info.value) == message
    # another connection to the same database sees only committed rows
    other = con.cursor()
    assert [row[:6] for row in _stored(other)] == [
        ("events", datetime(2024, 3, 12, 10, 0), 1, 1, 2, "ok"),
        ("transactions", datetime(2024, 3, 1, 10, 0), 12, 3, 7, "error"),
    ]
    assert _stored(other)[1][6] == message


def test_two_stale_sources_are_named_in_one_error(con, tmp_path):
    _lines(con, "2024-03-01 10:00")
    settings = _settings(tmp_path, transactions=(None, 7), events=(None, 7))
    with pytest.raises(InputError) as info:
        check_freshness(con, settings, AS_OF, RUN_ID)
    text = str(info.value)
    assert text.startswith("Source 'transactions' is stale: its newest row is from 2024-03-01")
    assert "Source 'events' is stale: it has no rows in core.events" in text
    assert text.count("Nothing was published.") == 1
    assert text.endswith(
        "Nothing was published. Check that today's export arrived, or raise error_after_days. "
        "Check that its export arrived and its rows passed validation."
    )


def test_a_source_without_rows_is_infinitely_stale(con, tmp_path):
    # only warn_after_days set: a warning, and the run goes on
    [events] = check_freshness(con, _settings(tmp_path, events=(3, None)), AS_OF, RUN_ID)
    assert events == SourceFreshness(
        source="events",
        newest_at=None,
        age_days=None,
        warn_after_days=3,
        error_after_days=None,
        status="warn",
        message="Source 'events' is stale: it has no rows in core.events, so it counts as "
        "infinitely old, over [sources.events].warn_after_days = 3. Check that its export "
        "arrived and its rows passed validation.",
    )
    # error_after_days set: the run stops, even when warn_after_days is set too
    with pytest.raises(InputError, match=re.escape("error_after_days = 30")):
        check_freshness(con, _settings(tmp_path, events=(3, 30)), AS_OF, "run-2")
    assert [row[1:6] for row in _stored(con, "run-2")] == [(None, None, 3, 30, "error")]


def test_customers_without_a_dated_row_count_as_without_rows(con, tmp_path):
    con.execute("insert into core.customer_records values ('c1', null, null)")
    [customers] = check_freshness(con, _settings(tmp_path, customers=(3, None)), AS_OF, RUN_ID)
    assert (customers.status, customers.age_days) == ("warn", None)
    assert "none of its 1 rows in core.customer_records is dated on or before 2024-03-13" in (
        customers.message
    )


def test_sources_without_thresholds_are_not_checked(con, tmp_path):
    _lines(con, "2020-01-01 10:00")  # years old, but nobody asked
    assert check_freshness(con, _settings(tmp_path), AS_OF, RUN_ID) == []
    assert _stored(con) == []


def test_checking_a_run_again_replaces_its_rows(con, tmp_path):
    _lines(con, "2024-03-01 10:00")
    settings = _settings(tmp_path, transactions=(5, None))
    check_freshness(con, settings, AS_OF, RUN_ID)
    check_freshness(con, settings, AS_OF, "run-2")
    _lines(con, "2024-03-12 10:00")
    check_freshness(con, settings, AS_OF, RUN_ID)
    assert [row[2] for row in _stored(con)] == [1]
    assert [row[2] for row in _stored(con, "run-2")] == [12]


def test_the_run_summary_has_a_line_per_stale_source(con, tmp_path):
    from pipelines.summary import format_freshness_summary

    _lines(con, "2024-03-12 10:00")
    _events(con, "2024-03-04 10:00")
    settings = _settings(tmp_path, transactions=(3, None), events=(7, 30), customers=(1, None))
    check_freshness(con, settings, AS_OF, RUN_ID)
    assert format_freshness_summary(con, RUN_ID).splitlines() == [
        "Freshness: customers has no row dated on or before the as-of date (warn after 1 day)",
        "Freshness: events is 9 days old (warn after 7 days)",
    ]
    assert format_freshness_summary(con, "another-run") == ""
