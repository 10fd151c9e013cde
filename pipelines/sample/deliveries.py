"""Generated exports cut into daily deliveries, as a shop's export job would send them.

:func:`split_daily_deliveries` turns one folder written by
:func:`pipelines.sample.generate_sample` into a history delivery (everything dated before
the first day) and one delivery per day; :func:`write_deliveries_config` writes a
``crm.toml`` whose sources read one ``incoming/`` folder, into which a test or a benchmark
copies each delivery (:func:`copy_delivery`) before a run. The pipeline orders the files
of one run by name, so the names sort chronologically, history first::

    <out>/history/transactions_0000-history.csv   events_0000-history.jsonl   customers_0000-history.csv
    <out>/2025-12-22/transactions_2025-12-22.csv  events_2025-12-22.jsonl     customers_2025-12-22.csv

Rows are copied as they are (the exact text of each record, in the generated order), so
every generated row is in exactly one file, or left out when it is dated after the last
day.
"""

from __future__ import annotations

import csv
import functools
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from pipelines.assets import asset_dir

SOURCES = ("transactions", "customers", "events")
# source -> (generated file name, suffix of a delivery's file)
_FILES = {
    "transactions": ("transactions.csv", ".csv"),
    "customers": ("customers.csv", ".csv"),
    "events": ("events.jsonl", ".jsonl"),
}
HISTORY_DIR = "history"
# "0000-history" sorts before every "YYYY-MM-DD", so history is ingested first.
HISTORY_TAG = "0000-history"
INCOMING_DIR = "incoming"
SAMPLE_CONFIG = asset_dir("sample") / "crm.toml"

_HISTORY = 0
_LEFT_OUT = -1


@dataclass(frozen=True)
class Delivery:
    """One delivery: ``day`` (None for the history), its ``directory`` and the data rows
    of each source's file in it (headers not counted)."""

    day: date | None
    directory: Path
    rows: dict[str, int]

    @property
    def tag(self) -> str:
        """The part of the file names after ``<source>_``: the ISO day or ``0000-history``."""
        return HISTORY_TAG if self.day is None else self.day.isoformat()

    @property
    def files(self) -> dict[str, Path]:
        """The delivery's file per source."""
        return {
            source: self.directory / f"{source}_{self.tag}{suffix}"
            for source, (_, suffix) in _FILES.items()
        }


@dataclass(frozen=True)
class DeliverySplit:
    """What :func:`split_daily_deliveries` wrote: ``deliveries`` (history first, then one
    per day in order) and ``left_out``, the rows per source dated after the last day."""

    deliveries: tuple[Delivery, ...]
    left_out: dict[str, int]

    @property
    def history(self) -> Delivery:
        return self.deliveries[0]

    @property
    def days(self) -> tuple[Delivery, ...]:
        return self.deliveries[1:]


def split_daily_deliveries(generated: Path, out: Path, first_day: date, days: int) -> DeliverySplit:
    """Split the exports in ``generated`` into a history delivery and ``days`` daily ones.

    Parameters
    ----------
    generated : a folder written by :func:`pipelines.sample.generate_sample`, with
        ``transactions.csv``, ``customers.csv`` and ``events.jsonl``.
    out : folder to write into; created, and must be empty if it exists.
    first_day : the first daily delivery's day (UTC).
    days : number of daily deliveries, at least 1.

    A row's day (UTC) is: transactions, the date of ``InvoiceDate``
    (``%Y-%m-%d %H:%M:%S``, UTC); events, the UTC date of ``timestamp`` (ISO 8601);
    customers, the date of ``UpdatedAt``, else of ``SignupDate`` (the record's latest
    version is what the export sends). Rows dated before ``first_day``, and rows with no
    readable date, go to ``out/history/``; rows of day ``d`` to ``out/<d>/``; rows dated
    after the last day are left out. Every file is written for every delivery, a CSV with
    its header only (an empty JSON-lines file) when the day has no rows, so every day is a
    delivery.

    Returns
    -------
    DeliverySplit: the deliveries, their rows per source, and the rows left out per source.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    generated, out = Path(generated), Path(out)
    missing = [name for name, _ in _FILES.values() if not (generated / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{generated} has no {', '.join(missing)}")
    if out.exists() and any(out.iterdir()):
        # a folder left by another split would mix its days into this one's
        raise FileExistsError(f"{out} is not empty")
    day_list = [first_day + timedelta(days=i) for i in range(days)]
    deliveries = [Delivery(None, out / HISTORY_DIR, {})] + [
        Delivery(d, out / d.isoformat(), {}) for d in day_list
    ]
    for delivery in deliveries:
        delivery.directory.mkdir(parents=True)
    bucket = _bucket_of(first_day, day_list[-1])
    left_out = {}
    for source in SOURCES:
        name, _ = _FILES[source]
        counts = _split_file(
            generated / name,
            [d.files[source] for d in deliveries],
            _csv_records if name.endswith(".csv") else _jsonl_records,
            _DAY_OF[source],
            bucket,
        )
        for delivery, n in zip(deliveries, counts[:-1]):
            delivery.rows[source] = n
        left_out[source] = counts[-1]
    return DeliverySplit(tuple(deliveries), left_out)


def write_deliveries_config(directory: Path, incoming: str = INCOMING_DIR) -> Path:
    """Write ``directory/crm.toml`` for runs over deliveries copied into one folder.

    The text of the bundled ``data/sample/crm.toml`` with its sources' globs read from
    ``directory/<incoming>/`` (created) and the warehouse (``warehouse/crm.duckdb``),
    serving database (``serving/crm.duckdb``), exports (``exports/``) and reports
    (``reports/``) inside ``directory``. The input folder is not called ``exports``: that
    is the pipeline's own output folder for the marketing lists. Returns the config's path.
    """
    directory = Path(directory)
    text = SAMPLE_CONFIG.read_text(encoding="utf-8")
    replacements = [
        ('path = "../warehouse/crm.duckdb"', 'path = "warehouse/crm.duckdb"'),
        ('serving_path = "../serving/crm.duckdb"', 'serving_path = "serving/crm.duckdb"'),
        ('path = "../../exports"', 'path = "exports"'),
        ('path = "../../reports"', 'path = "reports"'),
    ] + [
        (f'path = "{source}*{suffix}"', f'path = "{incoming}/{source}*{suffix}"')
        for source, (_, suffix) in _FILES.items()
    ]
    for old, new in replacements:
        if text.count(old) != 1:
            raise ValueError(f"{SAMPLE_CONFIG} no longer has exactly one {old!r}")
        text = text.replace(old, new)
    (directory / incoming).mkdir(parents=True, exist_ok=True)
    config = directory / "crm.toml"
    config.write_text(text, encoding="utf-8")
    return config


def copy_delivery(delivery: Delivery, incoming: Path) -> list[Path]:
    """Copy the delivery's files into ``incoming``; returns the copies' paths."""
    copies = []
    for path in delivery.files.values():
        copies.append(Path(shutil.copy2(path, Path(incoming) / path.name)))
    return copies


# --- splitting ----------------------------------------------------------------------------


def _bucket_of(first_day: date, last_day: date) -> Callable[[date | None], int]:
    """Index of a day's delivery: 0 history (before first_day, or no date), 1.. the days,
    -1 left out (after last_day)."""

    def bucket(day: date | None) -> int:
        if day is None or day < first_day:
            return _HISTORY
        if day > last_day:
            return _LEFT_OUT
        return (day - first_day).days + 1

    return bucket


def _iso_day(text: str) -> date | None:
    """The date of an ISO ``YYYY-MM-DD...`` text whose date part is the UTC date; None
    when there is none."""
    return _parse_day(text[:10])


@functools.lru_cache(maxsize=1 << 16)
def _parse_day(text: str) -> date | None:
    # cached on the date part: a file has a few thousand distinct days
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _transaction_day(fields: dict[str, str]) -> date | None:
    # InvoiceDate is "%Y-%m-%d %H:%M:%S" in UTC (data/sample/crm.toml)
    return _iso_day(fields.get("InvoiceDate") or "")


def _customer_day(fields: dict[str, str]) -> date | None:
    # UpdatedAt is at or after SignupDate: the latest change decides when it is sent
    for column in ("UpdatedAt", "SignupDate"):
        day = _iso_day(fields.get(column) or "")
        if day is not None:
            return day
    return None


def _event_day(fields: dict[str, str]) -> date | None:
    stamp = fields.get("timestamp")
    if not isinstance(stamp, str):
        return None
    if stamp.endswith("Z"):  # what the generator writes: the date part is UTC
        return _iso_day(stamp)
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    # a stamp without an offset is taken as UTC, like the generator's
    return parsed.astimezone(UTC).date() if parsed.tzinfo else parsed.date()


_DAY_OF = {"transactions": _transaction_day, "customers": _customer_day, "events": _event_day}

# Yields (header text or None, then (fields, exact text) per record).
Records = Iterator[tuple[dict[str, str] | None, str]]


def _csv_records(fh: TextIO) -> Records:
    """The header line first (fields None), then every record as (column -> value, its
    exact text). The text is the record's own lines, so a quoted value with a line break
    stays one record."""
    lines: list[str] = []

    def feed() -> Iterator[str]:
        for line in fh:
            lines.append(line)
            yield line

    reader = csv.reader(feed())
    header = next(reader, None)
    if header is None:
        return
    yield None, "".join(lines)
    lines.clear()
    for values in reader:
        yield dict(zip(header, values)), "".join(lines)
        lines.clear()


def _jsonl_records(fh: TextIO) -> Records:
    """Every line as (its JSON object, or {} when it is none, its text)."""
    for line in fh:
        try:
            record = json.loads(line)
        except ValueError:
            record = {}
        yield (record if isinstance(record, dict) else {}), line


def _split_file(
    source: Path,
    targets: list[Path],
    records: Callable[[TextIO], Records],
    day_of: Callable[[dict[str, str]], date | None],
    bucket: Callable[[date | None], int],
) -> list[int]:
    """Write each record of ``source`` to ``targets[bucket(day_of(record))]`` (the header
    to all of them); returns the records per target, then the number left out."""
    counts = [0] * (len(targets) + 1)
    with open(source, newline="", encoding="utf-8") as fh:
        outs = [open(t, "w", newline="", encoding="utf-8") for t in targets]  # noqa: SIM115
        try:
            for fields, text in records(fh):
                if text and not text.endswith("\n"):
                    text += "\n"  # a last line without its newline would join the next
                if fields is None:
                    for out in outs:
                        out.write(text)
                    continue
                index = bucket(day_of(fields))
                counts[index] += 1  # -1, left out, is the last count
                if index != _LEFT_OUT:
                    outs[index].write(text)
        finally:
            for out in outs:
                out.close()
    return counts
