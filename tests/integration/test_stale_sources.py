"""Source freshness in whole runs (pipelines/load/freshness.py): a source past its
warn_after_days is named in the run summary; one past its error_after_days stops the run
before anything is published, and audit.runs says why."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest

from pipelines import steps
from pipelines.errors import InputError
from tests.helpers import TX_COLUMNS, write_config
from tests.pipeline_steps import run_pipeline


def _exports(tmp_path, transactions: str = "", events: str = ""):
    """Ten customers ordering from January; the latest order on 2024-06-10, the latest
    event on 2024-06-01. ``transactions`` and ``events``: extra keys of each source."""
    lines = ["InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status"]
    for c in range(1, 11):
        for k in range(c % 4 + 1):
            lines.append(f"O{c}-{k},{c},2024-0{k + 1}-1{c % 9} 10:00:00,{k + 1},{c}.25,completed")
    lines.append("O1-last,1,2024-06-10 10:00:00,1,3.00,completed")
    (tmp_path / "tx.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "ev.jsonl").write_text(
        '{"user": "3", "event": "page_view", "ts": "2024-05-20T10:00:00"}\n'
        '{"user": "4", "event": "page_view", "ts": "2024-06-01T11:00:00"}\n',
        encoding="utf-8",
    )
    body = (
        f'[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n{transactions}\n{TX_COLUMNS}'
        f'[sources.events]\npath = "ev.jsonl"\nformat = "jsonl"\n{events}\n'
        '[sources.events.columns]\ncustomer_id = "user"\nevent_type = "event"\nevent_ts = "ts"\n'
        '[exports]\npath = "exports"\n[report]\npath = "reports"\n'
    )
    return write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")


def test_a_source_past_warn_after_days_is_named_in_the_run_summary(tmp_path):
    config = _exports(
        tmp_path,
        transactions="warn_after_days = 3\nerror_after_days = 7",
        events="warn_after_days = 7",
    )
    # as flows.crm_pipeline runs it; the as-of date is derived: the latest order, 2024-06-10
    with steps.open_run(config, write_report=False) as run:
        for step in steps.STEPS.values():
            run.record(step(run.ctx))
        summary = run.summary()
    assert run.ctx.as_of == date(2024, 6, 10)
    assert "Freshness: events is 9 days old (warn after 7 days)" in summary.splitlines()
    assert "Freshness: transactions" not in summary  # 0 days old
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    try:
        status, rows_per_step = con.execute(
            "select status, rows_per_step from audit.runs where run_id = ?", [run.ctx.run_id]
        ).fetchall()[0]
        stored = con.execute(
            "select source, age_days, status from audit.source_freshness where run_id = ? "
            "order by source",
            [run.ctx.run_id],
        ).fetchall()
    finally:
        con.close()
    assert status == "succeeded"
    assert json.loads(rows_per_step)["freshness"] == {"transactions": "ok", "events": "warn"}
    assert stored == [("events", 9, "warn"), ("transactions", 0, "ok")]
    assert (tmp_path / "serving" / "crm.duckdb").exists()  # a warning publishes as usual


def test_a_source_past_error_after_days_stops_the_run_before_publishing(tmp_path):
    config = _exports(tmp_path, transactions="error_after_days = 1")
    message = (
        "Source 'transactions' is stale: its newest row is from 2024-06-10, 2 days before "
        "the as-of date 2024-06-12, over [sources.transactions].error_after_days = 1. "
        "Nothing was published. Check that today's export arrived, or raise error_after_days."
    )
    with pytest.raises(InputError) as info:
        run_pipeline(config, date(2024, 6, 12), write_report=False)
    assert str(info.value) == message
    for output in ("exports", "serving", "reports"):
        assert not (tmp_path / output).exists(), output
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    try:
        [(run_id, status, logged)] = con.execute(
            "select run_id, status, message from audit.runs"
        ).fetchall()
        stored = con.execute(
            "select run_id, source, age_days, error_after_days, status, message "
            "from audit.source_freshness"
        ).fetchall()
        models = con.execute(
            "select count(*) from information_schema.tables where table_schema = 'marts'"
        ).fetchall()[0][0]
    finally:
        con.close()
    assert (status, logged) == ("failed", message)
    assert stored == [(run_id, "transactions", 2, 1, "error", message)]
    assert models == 0  # stopped in the core step: no later step ran
