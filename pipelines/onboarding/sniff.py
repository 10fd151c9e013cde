"""Look at an export the pipeline has never seen: its format, encoding, delimiter, header
and a sample of its values as text, and what those values are (timestamps and their
formats, decimal commas, e-mails, phones). ``crm init`` (pipelines/onboarding/init.py)
turns this into a config.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipelines.errors import InputError

SAMPLE_ROWS = 20_000
SAMPLE_BYTES = 4 << 20
# the missing-value words of SourceConfig.missing_values, and the empty string
MISSING = {"", "na", "n/a", "#n/a", "null", "none", "nan", "nil"}

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s()./-]{6,20}$")
_NUMBER_DOT = re.compile(r"^[-+]?[^\d\s,.-]?\s?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")
_NUMBER_COMMA = re.compile(r"^[-+]?[^\d\s,.-]?\s?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")
_COMMA_DECIMAL = re.compile(r",\d{1,2}$|,\d+$")


@dataclass
class Sample:
    """What one file looks like: ``format`` as the config names it, the CSV dialect, the
    header names in file order and up to :data:`SAMPLE_ROWS` values per column as text
    (None for missing); ``typed_timestamps``: columns the file itself types as dates
    (Parquet, Excel), which need no format."""

    path: Path
    format: str
    columns: list[str]
    values: dict[str, list[str | None]]
    rows: int
    encoding: str = "utf-8"
    delimiter: str | None = None
    typed_timestamps: set[str] = field(default_factory=set)


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return {
        ".parquet": "parquet",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".json": "jsonl",
        ".xlsx": "excel",
        ".xlsm": "excel",
    }.get(suffix, "csv")


def sample_file(path: Path) -> Sample:
    """Read the start of an export (CSV, Parquet, JSON Lines or Excel) as text.

    Raises :class:`InputError` naming the file when it cannot be read at all.
    """
    if not path.is_file():
        raise InputError(f"{path} does not exist or is not a file.")
    fmt = format_of(path)
    try:
        if fmt == "csv":
            return _sample_csv(path)
        return _sample_typed(path, fmt)
    except InputError:
        raise
    except Exception as exc:  # each reader raises its own types for a bad file
        raise InputError(
            f"{path} cannot be read as {fmt} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'})."
        ) from exc


def _encoding(raw: bytes) -> tuple[str, str]:
    """(config encoding, Python codec) of the bytes."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", "utf-16"
    try:
        raw.decode("utf-8-sig")
        return "utf-8", "utf-8-sig"
    except UnicodeDecodeError as exc:
        if exc.start > len(raw) - 4:  # a character cut by the sample's end
            return "utf-8", "utf-8-sig"
    # Windows' code page uses 0x80-0x9f for printable characters (€, „, “); latin-1 there
    # has control codes that no export holds
    if any(0x80 <= b <= 0x9F for b in raw):
        return "cp1252", "cp1252"
    return "latin-1", "latin-1"


def _sample_csv(path: Path) -> Sample:
    with path.open("rb") as handle:
        raw = handle.read(SAMPLE_BYTES)
    encoding, codec = _encoding(raw)
    text = raw.decode(codec, errors="replace")
    if len(raw) == SAMPLE_BYTES:  # drop the cut last line
        text = text[: text.rfind("\n") + 1] or text
    first = text[:65536]
    try:
        delimiter = csv.Sniffer().sniff(first, delimiters=",;\t|").delimiter
    except csv.Error:
        header = first.splitlines()[0] if first else ""
        counts = {d: header.count(d) for d in ",;\t|"}
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows = []
    for row in reader:
        if row:
            rows.append(row)
        if len(rows) > SAMPLE_ROWS:
            break
    if not rows:
        raise InputError(f"{path} is empty: crm init needs a header row and some data.")
    header = [h.strip() for h in rows[0]]
    values = {name: [] for name in header}
    for row in rows[1:]:
        for i, name in enumerate(header):
            value = row[i].strip() if i < len(row) else ""
            values[name].append(None if value.lower() in MISSING else value)
    return Sample(path, "csv", header, values, len(rows) - 1, encoding, delimiter)


def _sample_typed(path: Path, fmt: str) -> Sample:
    import polars as pl

    if fmt == "parquet":
        frame = pl.read_parquet(path, n_rows=SAMPLE_ROWS)
    elif fmt == "excel":
        frame = pl.read_excel(path, engine="calamine", sheet_id=1)
        frame = frame.head(SAMPLE_ROWS)
    else:
        frame = pl.read_ndjson(path, n_rows=SAMPLE_ROWS, infer_schema_length=SAMPLE_ROWS)
    typed = {
        name
        for name, dtype in frame.schema.items()
        if dtype.is_temporal() and not isinstance(dtype, pl.Duration)
    }
    values: dict[str, list[str | None]] = {}
    for name, dtype in frame.schema.items():
        column = frame.get_column(name)
        if dtype.is_float():
            # as the pipeline reads them: a whole number is an integer ("17850", not 17850.0)
            column = (
                pl.when(column == column.round(0))
                .then(column.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(column.cast(pl.String))
            )
            column = frame.select(column.alias(name)).get_column(name)
        elif dtype.is_nested() or dtype == pl.Object:
            import json

            texts = [None if v is None else json.dumps(v, default=str) for v in column.to_list()]
            column = pl.Series(name, texts, dtype=pl.String)
        else:
            column = column.cast(pl.String)
        values[str(name)] = [
            None if v is None or v.strip().lower() in MISSING else v.strip()
            for v in column.to_list()
        ]
    return Sample(
        path, fmt, [str(c) for c in frame.columns], values, frame.height, "utf-8", None, typed
    )


# --- what the values are -----------------------------------------------------------------


def _present(values: list[str | None]) -> list[str]:
    return [v for v in values if v is not None]


def share(values: list[str | None], pattern: re.Pattern) -> float:
    """Share of the present values that match ``pattern`` (0 with none present)."""
    present = _present(values)
    return sum(bool(pattern.match(v)) for v in present) / len(present) if present else 0.0


def is_email(values: list[str | None]) -> bool:
    return share(values, _EMAIL) >= 0.8


def is_phone(values: list[str | None]) -> bool:
    present = _present(values)
    digits = [sum(c.isdigit() for c in v) for v in present]
    return (
        bool(present)
        and share(values, _PHONE) >= 0.8
        and sum(6 <= d <= 15 for d in digits) >= 0.8 * len(present)
        and timestamp_formats(values).parsed < 0.5
    )


def number_style(values: list[str | None]) -> str | None:
    """ "dot" or "comma" (decimal comma) when the values are numbers, else None."""
    present = _present(values)
    if not present:
        return None
    dot = sum(bool(_NUMBER_DOT.match(v)) for v in present)
    comma = sum(bool(_NUMBER_COMMA.match(v)) for v in present)
    if max(dot, comma) < 0.9 * len(present):
        return None
    # "1,234" reads both ways; a comma style needs a decimal comma somewhere
    has_decimal_comma = any(_COMMA_DECIMAL.search(v) and "." not in v[-4:] for v in present)
    has_decimal_dot = any(re.search(r"\.\d{1,2}$", v) for v in present)
    if comma >= dot and has_decimal_comma and not has_decimal_dot:
        return "comma"
    return "dot" if dot >= 0.9 * len(present) else None


def has_decimals(values: list[str | None]) -> bool:
    return any(re.search(r"[.,]\d{1,4}$", v) for v in _present(values))


# --- timestamps ----------------------------------------------------------------------------

_TIMES = ("", " %H:%M", " %H:%M:%S", "T%H:%M:%S", " %I:%M %p", " %I:%M:%S %p", " %H:%M:%S.%f")


def _date_formats() -> list[tuple[str, str]]:
    """(format, order) candidates: order is "dmy", "mdy" or "ymd"."""
    out = []
    for sep in ("/", ".", "-"):
        for year in ("%Y", "%y"):
            out.append((f"%d{sep}%m{sep}{year}", "dmy"))
            out.append((f"%m{sep}%d{sep}{year}", "mdy"))
        out.append((f"%Y{sep}%m{sep}%d", "ymd"))
    out += [
        ("%Y%m%d", "ymd"),
        ("%d %b %Y", "dmy"),
        ("%d-%b-%Y", "dmy"),
        ("%d-%b-%y", "dmy"),
        ("%b %d, %Y", "mdy"),
        ("%d %B %Y", "dmy"),
        ("%B %d, %Y", "mdy"),
    ]
    return out


CANDIDATES = [(date + time, order) for date, order in _date_formats() for time in _TIMES]


@dataclass
class Timestamps:
    """The formats a column's values need, in the order to try them (``[]``: ISO 8601,
    the default), the share of present values they parse, the day/month order decided
    and why, and the parsed datetimes (for the plausible-date check)."""

    formats: list[str]
    parsed: float
    order: str | None = None
    order_note: str = ""
    datetimes: list[datetime] = field(default_factory=list)


def _parses(value: str, fmt: str) -> datetime | None:
    try:
        return datetime.strptime(value, fmt)
    except ValueError:
        return None


def timestamp_formats(values: list[str | None], limit: int = 2000) -> Timestamps:
    """Which strptime formats read ``values``: ISO 8601 needs none; otherwise the fewest
    formats that read the most values, day-first or month-first decided by values with a
    day above 12 (ambiguous when there is none: day-first, and the note says so)."""
    distinct = list(dict.fromkeys(_present(values)))[:limit]
    if not distinct:
        return Timestamps([], 0.0)
    if all(_ISO.match(v) for v in distinct):
        return Timestamps([], 1.0, "ymd", datetimes=[_iso(v) for v in distinct])
    parsed_by: dict[str, dict[str, datetime]] = {}
    for fmt, _ in CANDIDATES:
        hits = {}
        for v in distinct:
            if (d := _parses(v, fmt)) is not None:
                hits[v] = d
        if hits:
            parsed_by[fmt] = hits
    orders = dict(CANDIDATES)
    dmy = sum(len(h) for f, h in parsed_by.items() if orders[f] == "dmy")
    mdy = sum(len(h) for f, h in parsed_by.items() if orders[f] == "mdy")
    # a value only one of the two orders reads (31/12 or 12/31) decides
    only_dmy = {v for f, h in parsed_by.items() if orders[f] == "dmy" for v in h} - {
        v for f, h in parsed_by.items() if orders[f] == "mdy" for v in h
    }
    only_mdy = {v for f, h in parsed_by.items() if orders[f] == "mdy" for v in h} - {
        v for f, h in parsed_by.items() if orders[f] == "dmy" for v in h
    }
    if only_mdy and len(only_mdy) > len(only_dmy):
        order, note = (
            "mdy",
            f"month-first: {len(only_mdy)} value(s) such as {sorted(only_mdy)[0]!r} have a day above 12 in second place",
        )
    elif only_dmy:
        order, note = (
            "dmy",
            f"day-first: {len(only_dmy)} value(s) such as {sorted(only_dmy)[0]!r} have a day above 12 in first place",
        )
    else:
        order = "dmy" if dmy >= mdy else "mdy"
        note = (
            "ambiguous: no day above 12 in the sample, so day-first was assumed; if the "
            "export writes month first, swap %d and %m"
            if dmy or mdy
            else ""
        )
    allowed = {f: h for f, h in parsed_by.items() if orders[f] in (order, "ymd")}
    chosen: list[str] = []
    covered: dict[str, datetime] = {}
    while True:
        best = max(
            allowed,
            key=lambda f: (len(set(allowed[f]) - set(covered)), -CANDIDATES.index((f, orders[f]))),
            default=None,
        )
        if best is None or not set(allowed[best]) - set(covered):
            break
        chosen.append(best)
        for v, d in allowed[best].items():
            covered.setdefault(v, d)
        if len(chosen) == 4:
            break
    # ISO values among others: DuckDB reads them with the ISO formats
    return Timestamps(
        chosen,
        len(covered) / len(distinct),
        order if (dmy or mdy) else "ymd",
        note if (dmy or mdy) else "",
        list(covered.values()),
    )


def _iso(value: str) -> datetime:
    text = value.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return datetime.fromisoformat(text[:10])


def most_common(values: list[str | None], n: int = 5) -> list[str]:
    return [v for v, _ in Counter(_present(values)).most_common(n)]
