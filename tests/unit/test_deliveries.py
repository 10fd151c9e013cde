"""pipelines.sample.deliveries: generated exports split into history + daily deliveries."""

from __future__ import annotations

import csv
import glob
import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from pipelines.config import load_settings
from pipelines.sample import generate_sample
from pipelines.sample.deliveries import (
    SOURCES,
    copy_delivery,
    split_daily_deliveries,
    write_deliveries_config,
)

START, END = date(2024, 1, 1), date(2024, 3, 31)
GENERATED_FILES = {
    "transactions": "transactions.csv",
    "customers": "customers.csv",
    "events": "events.jsonl",
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate_sample(out, customers=200, seed=1, start=START, end=END, progress=False)
    return out


def _data_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return lines[1:] if path.suffix == ".csv" else lines


def _day(source: str, line: str, header: list[str]) -> date:
    """The test's own reading of a row's UTC day (generated rows always have one)."""
    if source == "events":
        stamp = json.loads(line)["timestamp"]
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC).date()
    row = dict(zip(header, next(csv.reader([line]))))
    text = row["InvoiceDate"] if source == "transactions" else row["UpdatedAt"] or row["SignupDate"]
    return datetime.strptime(text[:10], "%Y-%m-%d").date()


def _header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh))


def test_every_generated_row_is_delivered_once_or_left_out(generated, tmp_path):
    first_day, days = date(2024, 3, 20), 5  # 2024-03-25..31 are left out
    split = split_daily_deliveries(generated, tmp_path / "out", first_day, days)
    last_day = first_day + timedelta(days=days - 1)

    assert [d.day for d in split.deliveries] == [None] + [
        first_day + timedelta(days=i) for i in range(days)
    ]
    for source, name in GENERATED_FILES.items():
        original = _data_lines(generated / name)
        header = _header(generated / name) if name.endswith(".csv") else []
        delivered = Counter()
        for delivery in split.deliveries:
            lines = _data_lines(delivery.files[source])
            assert len(lines) == delivery.rows[source]
            delivered.update(lines)
            for line in lines:
                day = _day(source, line, header)
                if delivery.day is None:
                    assert day < first_day, (source, line)
                else:
                    assert day == delivery.day, (source, line)
        left_out = [x for x in original if _day(source, x, header) > last_day]
        assert split.left_out[source] == len(left_out) > 0
        assert sum(d.rows[source] for d in split.deliveries) + len(left_out) == len(original)
        assert delivered + Counter(left_out) == Counter(original)
        assert all(d.rows[source] > 0 for d in split.deliveries), source


def test_days_without_rows_get_a_header_only_file(generated, tmp_path):
    split = split_daily_deliveries(generated, tmp_path / "out", END, 3)  # END+1, END+2: none

    assert split.left_out == dict.fromkeys(SOURCES, 0)
    for delivery in split.days[1:]:
        assert delivery.rows == dict.fromkeys(SOURCES, 0)
        files = delivery.files
        assert files["events"].read_bytes() == b""
        for source in ("transactions", "customers"):
            assert files[source].read_text(encoding="utf-8") == (
                (generated / GENERATED_FILES[source]).read_text(encoding="utf-8").split("\n")[0]
                + "\n"
            )
    assert split.days[0].rows["transactions"] > 0


def test_file_names_sort_history_first_then_by_day(generated, tmp_path):
    split = split_daily_deliveries(generated, tmp_path / "out", date(2024, 2, 27), 4)

    for source in SOURCES:
        names = [d.files[source].name for d in split.deliveries]
        assert names == sorted(names)
        assert names[0] == f"{source}_0000-history{'.jsonl' if source == 'events' else '.csv'}"
        assert names[1] == f"{source}_2024-02-27{'.jsonl' if source == 'events' else '.csv'}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
        "history",
    ]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_rows_are_dated_by_utc_day_and_latest_customer_date(tmp_path):
    src = tmp_path / "generated"
    _write(
        src / "transactions.csv",
        "InvoiceNo,InvoiceDate,Note\n"
        "1,2024-03-09 23:59:59,old\n"
        "2,2024-03-10 00:00:00,first day\n"
        '3,2024-03-11 12:00:00,"two,\nlines"\n'
        "4,not a date,unreadable\n"
        "5,2024-03-12 00:00:00,after\n",
    )
    _write(
        src / "customers.csv",
        "CustomerID,SignupDate,UpdatedAt\n"
        "c1,2024-01-01,2024-03-11 08:00:00\n"  # updated on day 2
        "c2,2024-03-10,\n"  # never updated: its signup day
        "c3,,\n"  # no date: history
        "c4,2024-01-01,2024-03-12 00:00:01\n"  # after the last day
        "c5,2024-01-01,2024-03-11 09:00:00",  # no final newline
    )
    _write(
        src / "events.jsonl",
        '{"id":"e1","timestamp":"2024-03-10T23:30:00Z"}\n'
        '{"id":"e2","timestamp":"2024-03-10T23:30:00-02:00"}\n'  # 2024-03-11 01:30 UTC
        '{"id":"e3","timestamp":"2024-03-09T20:00:00+00:00"}\n'
        "not json\n",
    )
    split = split_daily_deliveries(src, tmp_path / "out", date(2024, 3, 10), 2)
    history, day1, day2 = split.deliveries

    def ids(delivery, source, key):
        path = delivery.files[source]
        if source == "events":
            lines = path.read_text(encoding="utf-8").splitlines()
            return [json.loads(x)["id"] if x.startswith("{") else x for x in lines]
        with open(path, newline="", encoding="utf-8") as fh:
            return [row[key] for row in csv.DictReader(fh)]

    assert ids(history, "transactions", "InvoiceNo") == ["1", "4"]
    assert ids(day1, "transactions", "InvoiceNo") == ["2"]
    assert ids(day2, "transactions", "InvoiceNo") == ["3"]
    assert ids(history, "customers", "CustomerID") == ["c3"]
    assert ids(day1, "customers", "CustomerID") == ["c2"]
    assert ids(day2, "customers", "CustomerID") == ["c1", "c5"]
    assert ids(history, "events", "id") == ["e3", "not json"]
    assert ids(day1, "events", "id") == ["e1"]
    assert ids(day2, "events", "id") == ["e2"]
    assert split.left_out == {"transactions": 1, "customers": 1, "events": 0}
    assert day2.files["transactions"].read_text(encoding="utf-8").endswith('"two,\nlines"\n')
    # the record that had no newline gets one, so a later delivery's rows cannot join it
    assert day2.files["customers"].read_text(encoding="utf-8").endswith("09:00:00\n")


def test_refuses_a_non_empty_output_folder_and_no_days(generated, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "left.txt").write_text("x")
    with pytest.raises(FileExistsError):
        split_daily_deliveries(generated, tmp_path / "out", END, 1)
    with pytest.raises(ValueError, match="days"):
        split_daily_deliveries(generated, tmp_path / "other", END, 0)


def test_config_reads_the_incoming_folder_and_writes_inside_its_directory(generated, tmp_path):
    split = split_daily_deliveries(generated, tmp_path / "deliveries", date(2024, 3, 30), 2)
    run_dir = tmp_path / "run"
    settings = load_settings(write_deliveries_config(run_dir))

    for path in (
        settings.warehouse.path,
        settings.warehouse.serving_path,
        settings.exports.path,
        settings.report.path,
    ):
        assert path.is_relative_to(run_dir.resolve()), path
    assert settings.warehouse.path != settings.warehouse.serving_path
    # copied in reverse order: the glob still yields history first, as the pipeline orders
    for delivery in reversed(split.deliveries):
        copy_delivery(delivery, run_dir / "incoming")
    for source in SOURCES:
        matched = sorted(glob.glob(str(settings.sources[source].path)))
        assert [Path(p).name for p in matched] == [d.files[source].name for d in split.deliveries]
