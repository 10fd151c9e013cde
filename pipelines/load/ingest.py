"""Ingest: find each source's export files, skip re-deliveries, and load every row into
``raw.<source>`` with its lineage (``pipelines/load/readers.py`` reads the files).

Every data row lands in ``raw.<source>`` with the file's sha256, the row number (1 = first
data row after the header) and the ingestion time; ``raw.files`` records each file per
source and ``raw.deliveries`` every time a file was seen.

A file whose sha256 was ingested before for the same source is skipped and reported
(re-delivery); one file may feed several sources (it is known per source). A file
whose name was seen before but whose content changed is a new delivery: its rows are
loaded, exact duplicates of earlier rows are removed in ``core``, and for transactions the
latest delivery of an order id replaces the earlier one (see ``sql/core/transactions.sql``).
"""

from __future__ import annotations

import glob
import logging
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.config import CANONICAL_FIELDS, SourceConfig
from pipelines.files import file_sha256
from pipelines.load.readers import FileReport, read_file
from pipelines.sqlrun import ensure_bookkeeping_tables

log = logging.getLogger(__name__)


def ensure_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the bookkeeping tables (raw.files and the rest) and one table per source."""
    _migrate_files_key(con)
    ensure_bookkeeping_tables(con)
    for name, (required, optional) in CANONICAL_FIELDS.items():
        cols = ", ".join(f"{c} varchar" for c in (*required, *optional))
        con.execute(f"""
            create table if not exists raw.{name} (
                _file_sha256 varchar, _source_file varchar, _row_number bigint,
                _ingested_at timestamp, _run_id varchar, {cols})""")


def _migrate_files_key(con: duckdb.DuckDBPyConnection) -> None:
    """Re-key a raw.files made before files were known per source (key file_sha256).

    DuckDB cannot alter a primary key, so the old table is set aside, raw.files is created
    as sql/warehouse/bookkeeping.sql defines it, and the rows are copied (one transaction:
    all or nothing). Each old row keeps its source; the old key made (source, file_sha256)
    unique already.
    """
    keys = con.execute("""
        select constraint_column_names from duckdb_constraints()
        where database_name = current_database() and schema_name = 'raw'
          and table_name = 'files' and constraint_type = 'PRIMARY KEY'""").fetchall()
    if not keys or list(keys[0][0]) != ["file_sha256"]:
        return
    con.execute("begin transaction")
    try:
        con.execute("alter table raw.files rename to files_keyed_by_sha256")
        ensure_bookkeeping_tables(con)
        con.execute("insert into raw.files by name select * from raw.files_keyed_by_sha256")
        con.execute("drop table raw.files_keyed_by_sha256")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    log.info("raw.files re-keyed by (source, file_sha256)")


def list_source_files(source: SourceConfig) -> list[Path]:
    """Files matching the source's glob, sorted by name so runs are reproducible."""
    return sorted(Path(p) for p in glob.glob(source.path, recursive=True) if Path(p).is_file())


def ingest_source(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    run_id: str,
    ingested_at: datetime,
    ring=None,
) -> list[FileReport]:
    """Load every new file of ``source`` into ``raw.<source>``; one report per file.

    Rows of forgotten customers (a tombstoned customer id, or a rejected record with a
    tombstoned id or e-mail as a field) are left out as the rows are inserted, so their
    bytes never reach the working database; they are counted per file in
    ``audit.erased_rows`` (reason ``tombstone``). ``ring``: the erasure keys
    (:func:`pipelines.erasure_keys.key_ring`; default: from the environment), needed only
    when the warehouse has tombstones.

    Raises :class:`InputError` when a file lacks a column that a required field is mapped
    to, or cannot be decoded with the configured encoding; :class:`MissingKeyError` when a
    key the tombstones use is not in ``ring``.
    """
    from pipelines.erasure_keys import key_ring
    from pipelines.erasure_rows import keep_out as tombstone_filter

    ensure_raw_tables(con)
    keep_out = tombstone_filter(con, ring if ring is not None else key_ring())
    files = list_source_files(source)
    fingerprint = reading_fingerprint(source)
    reports = []
    for path in files:
        sha = file_sha256(path)
        known = con.execute(
            "select status, read_fingerprint from raw.files where source = ? and file_sha256 = ?",
            [source.name, sha],
        ).fetchall()
        known = known[0] if known else None
        if known is not None and known[1] is None:
            # read before reading was fingerprinted: taken as read under today's settings
            con.execute(
                "update raw.files set read_fingerprint = ? where source = ? and file_sha256 = ?",
                [fingerprint, source.name, sha],
            )
        elif known is not None and known[1] != fingerprint:
            log.info(
                "ingest %s %s: the column mapping or reading options changed; reading it again",
                source.name,
                path.name,
            )
            forget_file(con, source.name, sha)
            known = None
        if known is not None:
            report = FileReport(source.name, str(path), sha, "already_ingested", 0, 0, "none")
        else:
            remove_partial_load(con, source, sha)
            report = read_file(con, source, path, sha, run_id, ingested_at, keep_out)
            if keep_out is not None:
                _count_kept_out(con, source.name, sha, report, run_id)
            con.execute(
                "insert into raw.files (file_sha256, source, file_path, file_name, size_bytes, "
                "status, rows_read, rows_rejected, reader, columns_ignored, columns_missing, "
                "ingested_at, run_id, read_fingerprint) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    sha,
                    source.name,
                    str(path),
                    path.name,
                    path.stat().st_size,
                    report.status,
                    report.rows_read,
                    report.rows_rejected,
                    report.reader,
                    list(report.columns_ignored),
                    list(report.columns_missing),
                    ingested_at,
                    run_id,
                    fingerprint,
                ],
            )
        con.execute(
            "insert into raw.deliveries values (?, ?, ?, ?, ?, ?)",
            [source.name, str(path), sha, report.status, ingested_at, run_id],
        )
        log.info(
            "ingest %s %s: %s, %d rows, %d rejected",
            source.name,
            path.name,
            report.status,
            report.rows_read,
            report.rows_rejected,
        )
        reports.append(report)
    return reports


# Bump when the readers change what a file's rows become in raw.<source>.
READER_VERSION = 1


def reading_fingerprint(source: SourceConfig) -> str:
    """A digest of what decides a file's rows in ``raw.<source>``: the format, the column
    mapping and the reading options. A file delivered again after one of them changed is
    read again (a file no longer delivered keeps the rows it was read into)."""
    import hashlib
    import json

    parts = {
        "version": READER_VERSION,
        "format": source.format,
        "columns": dict(sorted(source.columns.items())),
        "delimiter": source.delimiter,
        "encoding": source.encoding,
        "quote": source.quote,
        "header": source.header,
        "names": list(source.names) if source.names else None,
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _count_kept_out(con, source: str, sha: str, report: FileReport, run_id: str) -> int:
    """Record in audit.erased_rows the rows of one file the tombstone filter left out:
    every row read is in raw.<source> or raw.rejected_rows, or was left out."""
    [(written,)] = con.execute(
        f"select (select count(*) from raw.{source} where _file_sha256 = $sha) + "
        "(select count(*) from raw.rejected_rows where source = $source "
        "and _file_sha256 = $sha)",
        {"sha": sha, "source": source},
    ).fetchall()
    left_out = report.rows_read - written
    if left_out > 0:
        con.execute(
            "insert into audit.erased_rows values (?, ?, ?, ?, 'tombstone', ?)",
            [run_id, source, sha, left_out, datetime.now(UTC).replace(tzinfo=None)],
        )
        log.info("ingest %s: %d rows of forgotten customers left out", source, left_out)
    return left_out


def forget_file(con: duckdb.DuckDBPyConnection, source: str, sha: str) -> None:
    """Remove what one file of ``source`` put into raw and what was done to it, so that it
    is read again as a new delivery (in one transaction)."""
    con.execute("begin transaction")
    try:
        con.execute(f"delete from raw.{source} where _file_sha256 = ?", [sha])
        for table in ("raw.rejected_rows", "audit.erased_rows"):
            column = "_file_sha256" if table == "raw.rejected_rows" else "file_sha256"
            con.execute(f"delete from {table} where source = ? and {column} = ?", [source, sha])
        for table in ("raw.files", "audit.file_processing"):
            con.execute(f"delete from {table} where source = ? and file_sha256 = ?", [source, sha])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def remove_partial_load(con: duckdb.DuckDBPyConnection, source: SourceConfig, sha: str) -> int:
    """Delete the rows of a file not recorded in raw.files; returns how many.

    Every INSERT commits on its own (the row-by-row reader inserts a chunk at a time) and
    a file is recorded in raw.files after its last row, so a run killed or failed in
    between leaves some of the file's rows behind. The next run, not finding the file in
    raw.files, loads it again: without this, those rows would be there twice.
    """
    [(removed,)] = con.execute(
        f"delete from raw.{source.name} where _file_sha256 = ?", [sha]
    ).fetchall()
    # Only this source's rejects: another source may have read the same file.
    [(n,)] = con.execute(
        "delete from raw.rejected_rows where source = ? and _file_sha256 = ?", [source.name, sha]
    ).fetchall()
    removed += n
    # and what was counted of it as erased (it is counted again as it is read again)
    con.execute(
        "delete from audit.erased_rows where source = ? and file_sha256 = ?", [source.name, sha]
    )
    if removed:
        log.warning(
            "ingest %s: removed %d rows an interrupted run had loaded from this "
            "file; loading it again",
            source.name,
            removed,
        )
    return removed
