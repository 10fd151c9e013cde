"""Daily runs that process only the day's delivery publish exactly what a full refresh
from scratch publishes over the same files at the same as-of date (issue 12).

Generated exports are cut into a history delivery and ten daily ones
(pipelines/sample/deliveries.py). One warehouse takes them a day at a time; for every
day a fresh warehouse takes all files delivered so far in one run. Their serving marts
(the latest run's rows) and export files must be the same, run ids aside
(pipelines/sample/compare.py).
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.errors import InputError
from pipelines.files import file_sha256
from pipelines.sample import generate_sample
from pipelines.sample.compare import compare_published
from pipelines.sample.deliveries import (
    copy_delivery,
    split_daily_deliveries,
    write_deliveries_config,
)
from tests.pipeline_steps import run_pipeline

FIRST_DAY = date(2025, 12, 20)
DAYS = 10
# small enough for CI; the churn model still trains (the labelled minimum lowered)
SETTINGS = "\n[churn]\nmin_labelled_customers = 30\nretrain_every_days = 7\n"


def _config(directory: Path) -> Path:
    config = write_deliveries_config(directory)
    config.write_text(config.read_text(encoding="utf-8") + SETTINGS, encoding="utf-8")
    return config


def _sha(path: Path) -> str:
    return file_sha256(path)


def _warehouse_rows(config: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(config.parent / "warehouse" / "crm.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    root = tmp_path_factory.mktemp("deliveries")
    generate_sample(
        root / "generated",
        customers=300,
        seed=7,
        start=date(2024, 1, 1),
        end=FIRST_DAY + timedelta(days=DAYS - 1),
        progress=False,
    )
    return split_daily_deliveries(root / "generated", root / "split", FIRST_DAY, DAYS)


def test_ten_daily_runs_publish_what_a_full_refresh_from_scratch_publishes(deliveries, tmp_path):
    daily = _config(tmp_path / "daily")
    copy_delivery(deliveries.history, daily.parent / "incoming")
    run_pipeline(daily, FIRST_DAY - timedelta(days=1), write_report=False)
    reused_scorer = []
    seen = {source: {_sha(path)} for source, path in deliveries.history.files.items()}
    for number, delivery in enumerate(deliveries.days, start=1):
        copy_delivery(delivery, daily.parent / "incoming")
        run_id = run_pipeline(daily, delivery.day, write_report=False)

        # the day's run processed the day's new files only (a day without customer
        # changes delivers a header-only file, the same bytes as an earlier day's)
        [(rows_per_step,)] = _warehouse_rows(
            daily, f"select rows_per_step from audit.runs where run_id = '{run_id}'"
        )
        files = json.loads(rows_per_step)["files"]
        new = {s: _sha(p) not in seen[s] for s, p in delivery.files.items()}
        assert {s: f["processed"] for s, f in files.items()} == {
            s: int(is_new) for s, is_new in new.items()
        }, (delivery.day, files)
        assert {s: f["reused"] for s, f in files.items()} == {
            s: len(shas) for s, shas in seen.items()
        }, (delivery.day, files)
        for source, path in delivery.files.items():
            seen[source].add(_sha(path))
        reused_scorer.append(json.loads(rows_per_step)["churn"]["reused_saved_scorer"])

        scratch = _config(tmp_path / f"scratch-{number}")
        for earlier in deliveries.deliveries[: number + 1]:
            copy_delivery(earlier, scratch.parent / "incoming")
        run_pipeline(scratch, delivery.day, write_report=False)
        assert compare_published(daily, scratch) == [], f"day {delivery.day}"
        shutil.rmtree(scratch.parent)
    assert sum(d.rows["transactions"] for d in deliveries.days) > 0
    # the scorer was trained on the grid's dates and reused between them
    assert True in reused_scorer and False in reused_scorer, reused_scorer


def test_a_rejected_day_leaves_the_previous_outputs_and_its_corrected_file_goes_through(
    deliveries, tmp_path
):
    config = _config(tmp_path / "daily")
    incoming = config.parent / "incoming"
    copy_delivery(deliveries.history, incoming)
    run_pipeline(config, FIRST_DAY - timedelta(days=1), write_report=False)
    published = sorted(p.name for p in (config.parent / "exports").iterdir())

    day = deliveries.days[0]
    copies = copy_delivery(day, incoming)
    good = next(p for p in copies if p.name.startswith("transactions"))
    text = good.read_text(encoding="utf-8")
    header, *lines = text.splitlines(keepends=True)
    # every order date unreadable: the file is mostly bad
    broken = header + "".join(line.replace(str(day.day), "31/31/2025", 1) for line in lines)
    good.write_text(broken, encoding="utf-8")
    with pytest.raises(InputError, match="failed validation"):
        run_pipeline(config, day.day, write_report=False)
    assert sorted(p.name for p in (config.parent / "exports").iterdir()) == published
    # while the rejected file is still delivered, every run stops and says so
    with pytest.raises(InputError, match="rejected by an earlier run"):
        run_pipeline(config, day.day, write_report=False)

    good.write_text(text, encoding="utf-8")  # the corrected file, under the same name
    run_pipeline(config, day.day, write_report=False)
    assert _warehouse_rows(config, "select count(*) from raw.files where status = 'rejected'") == [
        (1,)
    ]
    scratch = _config(tmp_path / "scratch")
    for delivery in deliveries.deliveries[:2]:
        copy_delivery(delivery, scratch.parent / "incoming")
    run_pipeline(scratch, day.day, write_report=False)
    assert compare_published(config, scratch) == []


def test_a_changed_mapping_reads_a_delivered_file_again_and_only_that_source(tmp_path):
    from tests.helpers import run_to_core, write_config

    (tmp_path / "tx.csv").write_text(
        "InvoiceNo,InvoiceDate,CustomerID,Amount,Bonus\n1,2024-01-05 10:00:00,c1,5,7\n"
    )
    (tmp_path / "ev.jsonl").write_text('{"u": "c1", "t": "2024-01-06T10:00:00Z", "e": "visit"}\n')
    events = (
        '[sources.events]\npath = "ev.jsonl"\nformat = "jsonl"\n'
        '[sources.events.columns]\ncustomer_id = "u"\nevent_ts = "t"\nevent_type = "e"\n'
    )
    body = (
        '[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "CustomerID"\norder_id = "InvoiceNo"\n'
        'order_ts = "InvoiceDate"\namount = "Amount"\n' + events
    )
    config = write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")
    con = run_to_core(config)
    assert con.execute("select amount from core.transactions").fetchall() == [(5,)]
    con.close()
    # the shop's amount is now in another column: the same file is read again
    config.write_text(config.read_text().replace('amount = "Amount"', 'amount = "Bonus"'))
    con = run_to_core(config, run_id="run-2")
    assert con.execute("select amount from core.transactions").fetchall() == [(7,)]
    assert con.execute(
        "select source, run_id from audit.file_processing order by source"
    ).fetchall() == [("events", "run-1"), ("transactions", "run-2")]
    assert con.execute("select count(*) from raw.transactions").fetchall() == [(1,)]
    con.close()


def test_a_rejected_file_is_tried_again_once_the_settings_it_failed_on_change(tmp_path):
    from tests.helpers import TX_COLUMNS, run_to_core, write_config

    (tmp_path / "tx.csv").write_text(
        "InvoiceNo,Quantity,InvoiceDate,UnitPrice,CustomerID,Status\n"
        + "".join(f"{i},1,05.01.2024 10:00,5,c{i},completed\n" for i in range(10))
    )
    body = '[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n' + TX_COLUMNS
    config = write_config(tmp_path, body)
    with pytest.raises(InputError, match="failed validation"):
        run_to_core(config)
    with pytest.raises(InputError, match="rejected by an earlier run"):
        run_to_core(config, run_id="run-2")
    # the fix the message suggests: the timestamp format
    config.write_text(
        config.read_text().replace(
            'format = "csv"\n', 'format = "csv"\ntimestamp_format = "%d.%m.%Y %H:%M"\n', 1
        )
    )
    con = run_to_core(config, run_id="run-3")
    assert con.execute("select count(*) from core.transactions").fetchall() == [(10,)]
    assert con.execute("select distinct status from raw.files").fetchall() == [("loaded",)]
    con.close()
