"""The calendar parts of daily runs: backfill dates, a scheduled run's as-of date, the
churn model's retraining grid; and which files a run must process."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest

from pipelines.config import load_settings
from pipelines.load import processing
from pipelines.load.clean import write_fx_rates
from pipelines.load.ingest import ensure_raw_tables
from pipelines.scoring.churn import RETRAIN_EPOCH, churn_training_date
from pipelines.sqlrun import ensure_bookkeeping_tables
from pipelines.steps import backfill_dates, scheduled_as_of
from tests.helpers import TX_COLUMNS, write_config


def test_backfill_dates_step_from_start_and_include_the_end_when_on_the_step():
    assert backfill_dates(date(2025, 1, 1), date(2025, 1, 3)) == [
        date(2025, 1, 1),
        date(2025, 1, 2),
        date(2025, 1, 3),
    ]
    assert backfill_dates(date(2025, 1, 1), date(2025, 1, 10), 4) == [
        date(2025, 1, 1),
        date(2025, 1, 5),
        date(2025, 1, 9),
    ]
    assert backfill_dates(date(2025, 1, 1), date(2025, 1, 1)) == [date(2025, 1, 1)]
    with pytest.raises(ValueError, match="before"):
        backfill_dates(date(2025, 1, 2), date(2025, 1, 1))
    with pytest.raises(ValueError, match="at least 1"):
        backfill_dates(date(2025, 1, 1), date(2025, 1, 2), 0)


def test_a_scheduled_run_is_as_of_its_scheduled_date_in_the_schedules_time_zone():
    # 23:30 UTC on 1 March is already 2 March in Berlin
    start = datetime(2025, 3, 1, 23, 30, tzinfo=UTC)
    assert scheduled_as_of(start, "Europe/Berlin") == date(2025, 3, 2)
    assert scheduled_as_of(start, "UTC") == date(2025, 3, 1)
    assert scheduled_as_of(start.replace(tzinfo=None), "America/New_York") == date(2025, 3, 1)


def test_the_training_date_is_the_latest_grid_date_and_fixed_between_grid_dates():
    every = 7
    grid = RETRAIN_EPOCH + timedelta(days=every * 1300)
    assert churn_training_date(grid, every) == grid
    for offset in range(every):
        assert churn_training_date(grid + timedelta(days=offset), every) == grid
    assert churn_training_date(grid - timedelta(days=1), every) == grid - timedelta(days=every)
    assert churn_training_date(date(2025, 6, 4), 1) == date(2025, 6, 4)
    with pytest.raises(ValueError):
        churn_training_date(grid, 0)


def _settings(tmp_path, extra: str = "", validation: str = ""):
    tmp_path.mkdir(parents=True, exist_ok=True)
    body = (
        '[sources.transactions]\npath = "tx*.csv"\nformat = "csv"\n'
        + extra
        + "\n"
        + TX_COLUMNS
        + '[sources.events]\npath = "ev*.jsonl"\nformat = "jsonl"\n'
        '[sources.events.columns]\ncustomer_id = "u"\nevent_ts = "t"\nevent_type = "e"\n'
    )
    return load_settings(write_config(tmp_path, body, validation))


def _warehouse():
    con = duckdb.connect()
    ensure_bookkeeping_tables(con)
    ensure_raw_tables(con)
    return con


def test_a_changed_source_option_makes_only_that_sources_files_pending(tmp_path):
    con = _warehouse()
    con.executemany(
        "insert into raw.files (file_sha256, source, file_path, status) values (?, ?, ?, ?)",
        [
            ("t1", "transactions", "tx1.csv", "loaded"),
            ("t2", "transactions", "tx2.csv", "loaded"),
            ("t3", "transactions", "tx3.csv", "rejected"),
            ("e1", "events", "ev1.jsonl", "loaded"),
        ],
    )
    before = _settings(tmp_path / "a")
    write_fx_rates(con, before)
    for source in ("transactions", "events"):
        found = processing.find_source_files(con, before, source)
        # every file is new, a rejected one is never processed
        assert set(found.pending) == ({"t1", "t2"} if source == "transactions" else {"e1"})
        processing.set_pending(con, found)
        processing.record_processed(con, found, "run-1", {})
    assert processing.find_source_files(con, before, "transactions").pending == ()

    after = _settings(tmp_path / "b", 'timestamp_format = "%d.%m.%Y %H:%M"')
    changed = processing.find_source_files(con, after, "transactions")
    assert (set(changed.pending), set(changed.changed), changed.reused) == ({"t1", "t2"},) * 2 + (
        0,
    )
    events = processing.find_source_files(con, after, "events")
    assert (events.pending, events.reused) == ((), 1)
    full = processing.find_source_files(con, before, "events", full_refresh=True)
    assert full.pending == ("e1",)


def test_a_changed_rule_setting_changes_the_fingerprint_of_every_source_it_reads(tmp_path):
    con = _warehouse()
    before = _settings(tmp_path / "a")
    after = _settings(tmp_path / "b", validation="[validation]\nearliest_date = 1990-01-01\n")
    write_fx_rates(con, before)
    prints = {
        settings_name: {
            s: processing.source_fingerprint(con, settings, s) for s in ("transactions", "events")
        }
        for settings_name, settings in (("before", before), ("after", after))
    }
    # earliest_date is read by the timestamp rules of both sources
    assert all(prints["before"][s] != prints["after"][s] for s in ("transactions", "events"))
    # the same settings give the same fingerprint, run after run
    assert prints["before"]["events"] == processing.source_fingerprint(con, before, "events")


def test_identity_as_known_at_a_date_ignores_records_known_later():
    from pipelines.core.identity import identity_as_known_at
    from pipelines.sqlrun import install_macros

    con = duckdb.connect()
    install_macros(con)
    con.execute("create schema core")
    # A and B are one person (same e-mail); B's record is known only from 1 March, and its
    # earlier sign-up makes B the survivor once known
    con.execute("""
        create table core.customer_records as select * from (values
            ('A', 'p@x.org', null, 'p', timestamp '2024-01-10', timestamp '2024-01-10'),
            ('B', 'p@x.org', null, 'p', timestamp '2023-06-01', timestamp '2024-03-01'))
            v(customer_id, email, phone, name_key, signup_at, updated_at)""")
    con.execute("""
        create table core.customer_map as select * from (values
            ('A', 'B', 'email'), ('B', 'B', 'self'), ('C', 'C', 'self'))
            v(source_customer_id, customer_id, match_rule)""")
    con.execute("""
        create table core.transactions as select * from (values
            ('B', 'o1', date '2024-01-15', 'A'), ('B', 'o2', date '2024-01-20', 'B'),
            ('C', 'o3', date '2024-01-21', 'C'), ('B', 'o4', date '2024-02-15', 'A'))
            v(customer_id, order_id, order_date, source_customer_id)""")
    con.execute("""
        create table core.events as select * from (values
            ('B', timestamp '2024-01-16 10:00', 'A'), ('B', timestamp '2024-02-16 10:00', 'B'))
            v(customer_id, event_at, source_customer_id)""")
    query = "select customer_id, order_id from core.transactions order by order_id"
    with identity_as_known_at(con, date(2024, 2, 1)):
        assert con.execute(query).fetchall() == [("A", "o1"), ("B", "o2"), ("C", "o3")]
        assert con.execute("select customer_id from core.events").fetchall() == [("A",)]
        assert con.execute("select customer_id from core.customer_records").fetchall() == [("A",)]
    # outside the block: the warehouse's own tables, untouched
    assert con.execute(query).fetchall() == [("B", "o1"), ("B", "o2"), ("C", "o3"), ("B", "o4")]
    with identity_as_known_at(con, date(2024, 3, 1)):
        assert con.execute(query).fetchall() == [
            ("B", "o1"),
            ("B", "o2"),
            ("C", "o3"),
            ("B", "o4"),
        ]
