"""The exact reader: a text file's records one by one, in Python, into ``raw.<source>``.

It takes over where DuckDB's readers (``pipelines/load/readers.py``) would misread or
reject a file: it numbers every record, and a record it cannot split into fields (a
stray quote, a line that is not JSON) costs one physical line, which goes to
``raw.rejected_rows`` with the reason.
"""

from __future__ import annotations

import csv
import io
import json
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from pipelines.config import SourceConfig
from pipelines.errors import InputError
from pipelines.load.mapping import FileReport, _map_columns, keep_out_rows, source_fields

_CHUNK_ROWS = 200_000


def _open_text(path: Path, source: SourceConfig) -> io.TextIOWrapper:
    encoding = "utf-8-sig" if source.encoding == "utf-8" else source.encoding
    # newline="" lets the csv module see \r\n, \n and lone \r alike (mixed line endings).
    return open(path, encoding=encoding, errors="strict", newline="")


def _sniff_delimiter(path: Path, source: SourceConfig) -> str:
    if source.delimiter is not None:
        return source.delimiter
    # Sniff on bytes decoded leniently: a decoding problem is reported by the reader.
    head = path.read_bytes()[: 64 * 1024].decode(source.encoding, errors="replace")
    first = head.lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _records(
    path: Path, source: SourceConfig
) -> Iterator[tuple[int, list[str] | dict | None, str, str | None]]:
    """Yield (line_number, fields or None, reason, raw line) for every record.

    ``fields`` is None for a record the reader rejected; ``reason`` then says why. For
    JSON Lines ``fields`` is the decoded object. ``raw line`` (raw.rejected_rows.raw_line)
    is the line's text for the text format and None otherwise, as it always was.
    """
    fh = _open_text(path, source)
    try:
        if source.format == "text":
            for line_no, line in enumerate(fh, start=1):
                if line.strip():
                    yield line_no, line.split(), "", line.rstrip("\r\n")
            return
        if source.format == "jsonl":
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield line_no, None, f"not valid JSON: {exc.msg} (column {exc.colno})", None
                    continue
                except RecursionError:
                    # Python's parser recurses once per nesting level; the record is
                    # rejected on its own instead of failing the run.
                    yield line_no, None, "JSON nested too deep to read", None
                    continue
                except ValueError as exc:  # e.g. an integer with too many digits
                    yield line_no, None, f"not valid JSON: {exc}", None
                    continue
                if not isinstance(obj, dict):
                    yield line_no, None, "JSON line is not an object", None
                    continue
                yield line_no, obj, "", None
            return
        yield from _csv_records(fh, path, source)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"File {path} (source '{source.name}') is not valid {source.encoding} text "
            f'(byte {exc.start}: {exc.reason}). Set encoding = "latin-1" (or the file\'s '
            f"real encoding) in [sources.{source.name}]."
        ) from exc
    finally:
        fh.close()


# The csv module's default limit (131,072 characters) rejects real long fields (notes,
# HTML descriptions). The limit also bounds how much of the file an unterminated quote
# can pull into one record before the record is rejected and its lines read again, so
# it stays finite: 16 Mi characters.
CSV_FIELD_LIMIT = 16 * 1024 * 1024


class _Lines:
    """The physical lines of a text file, as an iterator the csv module reads from.

    Lines keep their ending (\\r\\n, \\n or \\r; the file is opened with newline="").
    ``taken`` holds the lines handed out since :meth:`start`, i.e. the lines of the record
    being parsed, and ``first`` the number of its first line (from 1). :meth:`reject_first`
    gives back all of them but the first, to be read again. Unlike a generator, it can
    hand out lines again after reporting the end.
    """

    def __init__(self, fh) -> None:
        self._file = iter(fh)
        self._pending: deque[str] = deque()
        self.taken: list[str] = []
        self.first = 1

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._pending.popleft() if self._pending else next(self._file)
        self.taken.append(line)
        return line

    def start(self) -> None:
        self.first += len(self.taken)
        self.taken = []

    def reject_first(self) -> None:
        """Give back the record's lines after its first: the next record starts there."""
        self._pending.extendleft(reversed(self.taken[1:]))
        del self.taken[1:]


def _csv_records(
    fh, path: Path, source: SourceConfig
) -> Iterator[tuple[int, list[str] | None, str, str | None]]:
    """Records of a delimited file; a broken record costs one physical line.

    A stray or unterminated quote makes the csv module read on, across lines, to the
    next quote (or the end of the file). So when a record fails (csv.Error), or spans
    several lines and has the wrong number of fields, only its first physical line is
    rejected, and reading resumes at the line after it. A well-formed quoted field with
    line breaks inside (the field count matches) stays one record.
    """
    csv.field_size_limit(CSV_FIELD_LIMIT)
    quoting = csv.QUOTE_NONE if source.quote == "" else csv.QUOTE_MINIMAL
    lines = _Lines(fh)
    reader = csv.reader(
        lines,
        delimiter=_sniff_delimiter(path, source),
        quotechar=source.quote or '"',
        quoting=quoting,
        strict=True,
    )
    # Fields a record must have: the header's (its first record) or the names given.
    expected = None if source.header else len(source.names or ())
    while True:
        lines.start()
        try:
            row = next(reader)
            reason = ""
        except StopIteration:
            return
        except csv.Error as exc:
            row, reason = None, f"CSV reader: {exc}"
            if len(lines.taken) > 1:
                reason += (
                    f" (reading a quoted field opened on this line, at line "
                    f"{lines.first + len(lines.taken) - 1})"
                )
        taken = lines.taken
        if row is not None and len(taken) > 1 and expected is not None and len(row) != expected:
            row, reason = (
                None,
                (
                    f"CSV reader: a quoted field opened on this line runs over "
                    f"{len(taken)} lines and leaves {len(row)} fields, "
                    f"expected {expected}"
                ),
            )
        if row is None:
            yield lines.first, None, reason, None
            lines.reject_first()
            continue
        if any(field.strip() for field in row):
            if expected is None:
                expected = len(row)
            yield lines.first, row, "", None


def _ingest_python(con, source: SourceConfig, path: Path, lineage: dict) -> FileReport:
    records = _records(path, source)
    if source.format == "jsonl":
        header: list[str] | None = None
    elif source.header:
        first = next(records, None)
        if first is None:
            return FileReport(
                source.name, str(path), lineage["_file_sha256"], "empty", 0, 0, "python"
            )
        if first[1] is None:
            raise InputError(
                f"File {path} (source '{source.name}'): the header row (line {first[0]}) "
                f"cannot be read ({first[2]}). Fix the header, or set header = false and "
                f"names = [...] in [sources.{source.name}]."
            )
        header = [c.strip() for c in first[1]]
    else:
        header = list(source.names or ())
    mapping: dict[str, str] | None = None
    ignored: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    if header is not None:
        mapping, ignored, missing = _map_columns(source, path, header)
    fields = source_fields(source)
    batch: dict[str, list] = {f: [] for f in ("_row_number", *fields)}
    rejects: list[tuple] = []
    row_number = 0
    json_keys: list[str] = []  # JSON keys in the order first seen
    json_seen: set[str] = set()

    def flush() -> None:
        if not batch["_row_number"]:
            return
        table = pa.table(
            {
                k: pa.array(v, type=pa.int64() if k == "_row_number" else pa.string())
                for k, v in batch.items()
            }
        )
        con.register("_ingest_batch", table)
        query, params = keep_out_rows(
            f"select $_file_sha256, $_source_file, _row_number, $_ingested_at, $_run_id, "
            f"{', '.join(fields)} from _ingest_batch",
            lineage,
        )
        con.execute(f"insert into raw.{source.name} {query}", params)
        con.unregister("_ingest_batch")
        for values in batch.values():
            values.clear()

    for line_no, row, reason, raw in records:
        row_number += 1
        if row is None:
            rejects.append((row_number, line_no, reason, raw))
            continue
        if isinstance(row, dict):
            if not json_seen.issuperset(row):
                # A mapped key may first appear in a later record: map again over every
                # key seen so far, or its values would be dropped.
                json_keys.extend(k for k in row if k not in json_seen)
                json_seen.update(row)
                mapping, _, _ = _map_columns(source, path, json_keys)
            try:
                values = {
                    canonical: _json_text(row.get(column)) for canonical, column in mapping.items()
                }
            except (RecursionError, ValueError) as exc:
                # json.dumps recurses per nesting level too (a value nested deeper than
                # json.loads minded): the record is rejected, not the run.
                reason = (
                    "JSON nested too deep to write as text"
                    if isinstance(exc, RecursionError)
                    else f"JSON value cannot be written as text: {exc}"
                )
                rejects.append((row_number, line_no, reason, raw))
                continue
        else:
            if len(row) != len(header or ()):
                rejects.append(
                    (
                        row_number,
                        line_no,
                        f"expected {len(header or ())} fields, found {len(row)}",
                        raw,
                    )
                )
                continue
            by_name = dict(zip(header, row))
            values = {
                canonical: (by_name[column].strip() or None)
                for canonical, column in mapping.items()
            }
        batch["_row_number"].append(row_number)
        for f in fields:
            batch[f].append(values.get(f))
        if len(batch["_row_number"]) >= _CHUNK_ROWS:
            flush()
    flush()
    if json_keys:
        _, ignored, missing = _map_columns(source, path, json_keys)
    if rejects:
        _insert_rejects(con, source, lineage, rejects)
    status = "loaded" if row_number else "header_only"
    return FileReport(
        source.name,
        str(path),
        lineage["_file_sha256"],
        status,
        row_number,
        len(rejects),
        "python",
        ignored,
        missing,
    )


def _insert_rejects(con, source: SourceConfig, lineage: dict, rejects: list[tuple]) -> None:
    """Rejected records into raw.rejected_rows; with ``lineage["keep_out"]``, those with a
    field that is a forgotten customer's id or e-mail are left out (counted as erased by
    the caller)."""
    rows = [
        [
            source.name,
            lineage["_file_sha256"],
            lineage["_source_file"],
            rn,
            ln,
            reason,
            raw,
            lineage["_ingested_at"],
            lineage["_run_id"],
        ]
        for rn, ln, reason, raw in rejects
    ]
    keep_out = lineage.get("keep_out")
    if keep_out is None:
        con.executemany("insert into raw.rejected_rows values (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return
    names = ("source", "_file_sha256", "_source_file", "_row_number", "line_number", "reason")
    columns = {name: [r[i] for r in rows] for i, name in enumerate(names)}
    table = pa.table(
        {
            **{
                k: pa.array(v, type=pa.int64() if k in ("_row_number", "line_number") else None)
                for k, v in columns.items()
            },
            "raw_line": pa.array([r[6] for r in rows], type=pa.string()),
        }
    )
    condition, params = keep_out.line_condition("raw_line")
    con.register("_ingest_rejects", table)
    try:
        con.execute(
            "insert into raw.rejected_rows select source, _file_sha256, _source_file, "
            "_row_number, line_number, reason, raw_line, $_ingested_at, $_run_id "
            f"from _ingest_rejects where raw_line is null or not {condition}",
            {**params, "_ingested_at": lineage["_ingested_at"], "_run_id": lineage["_run_id"]},
        )
    finally:
        con.unregister("_ingest_rejects")


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value).strip()
    return text or None
