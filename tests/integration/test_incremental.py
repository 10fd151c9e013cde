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
