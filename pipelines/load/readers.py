"""Readers: one export file's rows into ``raw.<source>``, mapped to canonical fields.

Each file is read as text (no type guessing: ``00042`` stays ``00042``) by DuckDB's
readers where they read the file cleanly, else by an exact Python reader that numbers
every record. Records a reader cannot split into fields go to ``raw.rejected_rows`` with
the reader's reason, so they are counted as quarantined, never lost.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.config import CANONICAL_FIELDS, SourceConfig
from pipelines.errors import InputError

log = logging.getLogger(__name__)

_CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class FileReport:
    """What happened to one file. ``rows_read`` = data rows found (header excluded)."""

    source: str
    path: str
    sha256: str
    status: str  # loaded | empty | header_only | already_ingested
    rows_read: int
    rows_rejected: int
    reader: str
    columns_ignored: tuple[str, ...] = ()
    columns_missing: tuple[str, ...] = ()


def source_fields(source: SourceConfig) -> list[str]:
    """Canonical fields stored for a source, in a fixed order (required first)."""
    required, optional = CANONICAL_FIELDS[source.name]
    return list(required) + list(optional)


def read_file(
    con, source: SourceConfig, path: Path, sha: str, run_id: str, ingested_at
) -> FileReport:
    """Load one file's rows into ``raw.<source>`` (rejects into ``raw.rejected_rows``) with
    their lineage; returns what happened. Raises :class:`InputError` for a file that cannot
    be read at all (a missing required column, a wrong encoding)."""
    if path.stat().st_size == 0:
        return FileReport(source.name, str(path), sha, "empty", 0, 0, "none")
    lineage = {
        "_file_sha256": sha,
        "_source_file": str(path),
        "_ingested_at": ingested_at,
        "_run_id": run_id,
    }
    if source.format == "parquet":
        return _ingest_parquet(con, source, path, lineage)
    if source.format == "csv":
        try:
            report = _ingest_csv_duckdb(con, source, path, lineage)
            if report is not None:
                return report
        except duckdb.Error as exc:
            # The fast reader's sniffer rejects some real files (mixed line endings, stray
            # quotes); the exact reader below handles them row by row.
            log.info(
                "DuckDB reader gave up on %s (%s); reading it row by row",
                path.name,
                str(exc).splitlines()[0],
            )
    if source.format == "jsonl":
        try:
            return _ingest_jsonl_duckdb(con, source, path, lineage)
        except duckdb.Error as exc:
            log.info(
                "DuckDB JSON reader gave up on %s (%s); reading it line by line",
                path.name,
                str(exc).splitlines()[0],
            )
    return _ingest_python(con, source, path, lineage)


# --- mapping -----------------------------------------------------------------------------


def _map_columns(
    source: SourceConfig, path: Path, found: list[str]
) -> tuple[dict[str, str], tuple[str, ...], tuple[str, ...]]:
    """Return canonical->found column, ignored columns, and mapped-but-absent optionals.

    Header names are matched exactly first, then ignoring case and surrounding spaces,
    because exports differ in nothing but that more often than in anything else.
    """
    required, _ = CANONICAL_FIELDS[source.name]
    by_norm = {c.strip().lower(): c for c in found}
    mapping, missing = {}, []
    for canonical, column in source.columns.items():
        if column in found:
            mapping[canonical] = column
        elif column.strip().lower() in by_norm:
            mapping[canonical] = by_norm[column.strip().lower()]
        elif canonical in required:
            raise InputError(
                f"File {path} (source '{source.name}') has no column '{column}', which "
                f"[sources.{source.name}.columns] maps to the required field '{canonical}'. "
                f"Columns found: {', '.join(found) or '(none)'}. Fix the mapping in the "
                "config, or check that the file has a header row (header = false and "
                "names = [...] for files without one)."
            )
        else:
            missing.append(column)
    used = set(mapping.values())
    ignored = tuple(c for c in found if c not in used)
    return mapping, ignored, tuple(missing)


def _select_list(source: SourceConfig, mapping: dict[str, str], text_expr) -> str:
    parts = []
    for field in source_fields(source):
        if field in mapping:
            parts.append(f"{text_expr(_quote_ident(mapping[field]))} as {field}")
        else:
            parts.append(f"null::varchar as {field}")
    return ", ".join(parts)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _insert_staged(
    con,
    source: SourceConfig,
    mapping: dict[str, str],
    lineage: dict,
    row_number_expr: str,
    text_expr=lambda c: c,
) -> None:
    select = _select_list(source, mapping, text_expr)
    con.execute(
        f"insert into raw.{source.name} select $_file_sha256, $_source_file, "
        f"{row_number_expr}, $_ingested_at, $_run_id, {select} from _ingest_stage",
        lineage,
    )


# --- DuckDB fast paths -------------------------------------------------------------------


def _duckdb_csv_options(source: SourceConfig, path: Path) -> tuple[str, dict]:
    # Dialect always explicit: left to itself, the sniffer may pick "no quoting" for a file
    # with a stray quote and silently misread it. With the dialect fixed, such files make
    # DuckDB raise, and the exact reader takes over.
    quote = '"' if source.quote is None else source.quote
    opts = [
        "all_varchar = true",
        "store_rejects = true",
        "header = $header",
        "delim = $delim",
        "quote = $quote",
        "escape = $quote",
    ]
    params: dict = {
        "header": source.header,
        "delim": _sniff_delimiter(path, source),
        "quote": quote,
    }
    if source.encoding != "utf-8":
        opts.append("encoding = $encoding")
        params["encoding"] = source.encoding
    if source.names:
        opts.append("names = $names")
        params["names"] = list(source.names)
    return ", ".join(opts), params


def _ingest_csv_duckdb(con, source: SourceConfig, path: Path, lineage: dict) -> FileReport | None:
    """Fast path. Returns None when the reader rejected any line, so that the exact
    reader can number and quarantine every record."""
    if source.encoding not in ("utf-8", "latin-1", "utf-16"):
        return None
    opts, params = _duckdb_csv_options(source, path)
    params["path"] = str(path)
    con.execute("drop table if exists _ingest_stage")
    # A temp table keeps the file's row order, so its rowid is the data row number.
    con.execute(f"create temp table _ingest_stage as select * from read_csv($path, {opts})", params)
    rejected = con.execute("select count(*) from reject_errors").fetchall()[0][0]
    if rejected:
        con.execute("drop table _ingest_stage")
        return None
    found = [
        r[0] for r in con.execute("select name from pragma_table_info('_ingest_stage')").fetchall()
    ]
    n = con.execute("select count(*) from _ingest_stage").fetchall()[0][0]
    if n == 0 and not _has_data_lines(path, source):
        found = _header_columns(path, source) or found
        mapping, ignored, missing = _map_columns(source, path, found)
        return FileReport(
            source.name,
            str(path),
            lineage["_file_sha256"],
            "header_only",
            0,
            0,
            "duckdb",
            ignored,
            missing,
        )
    if found and found[0].startswith("\ufeff"):
        # A UTF-8 byte-order mark glued to the first header name.
        con.execute(
            f"alter table _ingest_stage rename column {_quote_ident(found[0])} "
            f"to {_quote_ident(found[0].lstrip(chr(0xFEFF)))}"
        )
        found[0] = found[0].lstrip("\ufeff")
    mapping, ignored, missing = _map_columns(source, path, found)
    _insert_staged(con, source, mapping, lineage, "rowid + 1", _trimmed)
    con.execute("drop table _ingest_stage")
    return FileReport(
        source.name, str(path), lineage["_file_sha256"], "loaded", n, 0, "duckdb", ignored, missing
    )


def _trimmed(column: str) -> str:
    # trim() copies every string, so it is applied only to values with a space at either
    # end (trim strips spaces only): the same result, ~1.5 s less per 10M rows.
    return (
        f"case when starts_with({column}, ' ') or ends_with({column}, ' ') "
        f"then nullif(trim({column}), '') else nullif({column}, '') end"
    )


def _ingest_jsonl_duckdb(con, source: SourceConfig, path: Path, lineage: dict) -> FileReport:
    """Fast path for JSON Lines. Every mapped key is read as text (DuckDB unquotes strings
    and writes objects and arrays as compact JSON), as the line-by-line reader keeps them;
    letting DuckDB infer types took a second pass over the whole file."""
    # The keys come from DuckDB's sample of the first records; a mapped key missing there
    # is still read, and counts as present if any record has it.
    sampled = [
        r[0]
        for r in con.execute(
            "describe select * from read_json($path, format = 'newline_delimited', records = true)",
            {"path": str(path)},
        ).fetchall()
    ]
    by_norm = {c.strip().lower(): c for c in sampled}
    wanted = list(
        dict.fromkeys([by_norm.get(c.strip().lower(), c) for c in source.columns.values()])
    )
    con.execute("drop table if exists _ingest_stage")
    con.execute(
        "create temp table _ingest_stage as select * from read_json($path, "
        "format = 'newline_delimited', records = true, columns = $columns)",
        {"path": str(path), "columns": {c: "VARCHAR" for c in wanted}},
    )
    n = con.execute("select count(*) from _ingest_stage").fetchall()[0][0]
    if n == 0:
        return FileReport(source.name, str(path), lineage["_file_sha256"], "empty", 0, 0, "duckdb")
    unsampled = [c for c in wanted if c not in sampled]
    present = []
    if unsampled:
        counts = con.execute(
            "select "
            + ", ".join(f"count({_quote_ident(c)})" for c in unsampled)
            + " from _ingest_stage"
        ).fetchall()[0]
        present = [c for c, k in zip(unsampled, counts) if k]
    mapping, ignored, missing = _map_columns(source, path, sampled + present)
    _insert_staged(con, source, mapping, lineage, "rowid + 1", _trimmed)
    con.execute("drop table _ingest_stage")
    return FileReport(
        source.name, str(path), lineage["_file_sha256"], "loaded", n, 0, "duckdb", ignored, missing
    )


def _ingest_parquet(con, source: SourceConfig, path: Path, lineage: dict) -> FileReport:
    con.execute("drop table if exists _ingest_stage")
    try:
        con.execute(
            "create temp table _ingest_stage as select * from read_parquet($path, "
            "file_row_number = true)",
            {"path": str(path)},
        )
    except duckdb.Error as exc:
        raise InputError(
            f"File {path} (source '{source.name}') is not a readable Parquet "
            f"file: {str(exc).splitlines()[0]}. Re-export it, or set "
            f"[sources.{source.name}] format to match the file."
        ) from exc
    types = {
        _quote_ident(name): kind
        for name, kind in con.execute(
            "select name, type from pragma_table_info('_ingest_stage')"
        ).fetchall()
    }
    found = [
        r[0]
        for r in con.execute("select name from pragma_table_info('_ingest_stage')").fetchall()
        if r[0] != "file_row_number"
    ]
    n = con.execute("select count(*) from _ingest_stage").fetchall()[0][0]
    mapping, ignored, missing = _map_columns(source, path, found)
    _insert_staged(
        con, source, mapping, lineage, "file_row_number + 1", lambda c: _parquet_text(c, types[c])
    )
    con.execute("drop table _ingest_stage")
    status = "loaded" if n else "header_only"
    return FileReport(
        source.name, str(path), lineage["_file_sha256"], status, n, 0, "duckdb", ignored, missing
    )


def _parquet_text(column: str, kind: str) -> str:
    """SQL text of a Parquet column's value, as the same data exported as CSV reads.

    pandas writes an integer column with nulls as DOUBLE, so an id 17850 arrives as
    17850.0; cast to text that would be "17850.0", a different customer from the CSV's
    "17850". An integral FLOAT/DOUBLE value is therefore written as the integer it is,
    in full digits (1e20 -> "100000000000000000000", -0.0 -> "0"); other values keep
    DuckDB's shortest text ("12.5"). NaN is a missing value (NULL); +-infinity stays
    "inf"/"-inf", as before, for validation to judge. Other types are cast as they are.
    """
    if kind not in ("FLOAT", "DOUBLE"):
        return f"nullif(trim(cast({column} as varchar)), '')"
    return (
        f"case when isnan({column}) then null "
        f"when isinf({column}) then cast({column} as varchar) "
        f"when {column} = 0 then '0' "
        f"when {column} = trunc({column}) then format('{{:.0f}}', {column}) "
        f"else cast({column} as varchar) end"
    )


# --- exact row-by-row reader -------------------------------------------------------------


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


def _has_data_lines(path: Path, source: SourceConfig) -> bool:
    head = path.read_bytes()[: 1 << 16].decode(source.encoding, errors="replace")
    lines = [line for line in head.splitlines() if line.strip()]
    return len(lines) > (1 if source.header else 0)


def _header_columns(path: Path, source: SourceConfig) -> list[str]:
    if not source.header:
        return list(source.names or ())
    with _open_text(path, source) as fh:
        row = next(csv.reader(fh, delimiter=_sniff_delimiter(path, source)), [])
    return [c.strip() for c in row]


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
        con.execute(
            f"insert into raw.{source.name} select $_file_sha256, $_source_file, _row_number, "
            f"$_ingested_at, $_run_id, {', '.join(fields)} from _ingest_batch",
            lineage,
        )
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
        con.executemany(
            "insert into raw.rejected_rows values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
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
            ],
        )
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


def _json_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value).strip()
    return text or None
