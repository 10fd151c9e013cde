"""Publish: the serving database, replaced in one atomic step.

BI tools open ``warehouse.serving_path`` read-only while the pipeline runs. DuckDB lets
several processes open a file read-only, but a process that holds it read-only stops any
other process from opening it read-write (and the other way round). So the pipeline never
writes into the serving file: it writes a complete new database beside it under a hidden
temporary name, checkpoints and closes it, flushes it to disk, and renames it over the
serving path with :func:`os.replace`, which is atomic on POSIX file systems (the file
primitives are in :mod:`pipelines.files`).

- A reader that already has the old file open keeps reading the old file (its inode lives
  on until the reader closes it): it never blocks the run and never sees a mix.
- A reader that connects after the rename opens the new file. A process that keeps one
  DuckDB database instance open across queries (a connection pool) sees the new data only
  after it reconnects, because its open handle is still on the old inode.
- The new file is written from scratch, so it holds no bytes of rows deleted from the
  working database (this is how an erasure reaches the serving copy).

A crash before the rename leaves the old serving file untouched and a hidden
``.<name>.tmp-<run_id>`` beside it; the next publish removes such leftovers.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.errors import StepError
from pipelines.files import (
    copy_permissions,
    fsync_dir,
    fsync_file,
    make_dirs,
    remove_stale_temp_files,
    temp_path_for,
)
from pipelines.publish.serving_views import apply_serving_views, declare_primary_key

log = logging.getLogger(__name__)

SERVING_SCHEMA = "marts"
# DuckDB 2.0 writes files that DuckDB 1.x cannot open, and BI drivers (DBeaver's JDBC,
# Metabase, the ODBC driver behind Power BI) often lag a major version behind. The serving
# file is written in the 1.0 storage format, which every DuckDB since 1.0 reads.
SERVING_STORAGE_VERSION = "v1.0.0"


# --- serving database ---------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish_serving_database(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    *,
    storage_version: str | None = SERVING_STORAGE_VERSION,
) -> Path:
    """Write the serving database (:func:`stage_serving_database`) and swap it in at once
    (:func:`swap_serving_database`); returns the serving path. A run publishes through
    :mod:`pipelines.publish.journal` instead, with the exports and the report."""
    staged = stage_serving_database(con, settings, run_id, storage_version=storage_version)
    return swap_serving_database(staged, settings.warehouse.serving_path)


def swap_serving_database(staged: Path, serving: Path, keep_mode: bool = True) -> Path:
    """Rename the completely written ``staged`` file over ``serving`` (atomic); with
    ``keep_mode`` it takes the old file's mode and group (else it keeps its own: a run
    sets it from ``[permissions]``). Returns ``serving``."""
    if keep_mode:
        copy_permissions(serving, staged)
    fsync_file(staged)
    os.replace(staged, serving)
    fsync_dir(serving.parent)
    return serving


def stage_serving_database(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    *,
    storage_version: str | None = SERVING_STORAGE_VERSION,
) -> Path:
    """Write a fresh copy of the ``marts`` schema beside the serving database, under its
    hidden temporary name; returns that path (nothing is published yet).

    Every table of ``marts`` (with its table and column comments) and every view is
    copied into a new DuckDB file beside ``warehouse.serving_path``; the file is checked,
    checkpointed, closed and flushed. Nothing else of
    the working database (raw, staging, core, models, audit) reaches BI users.
    ``storage_version`` is the DuckDB storage format of the new file (None: this DuckDB's
    own, which older readers may not open).

    Raises :class:`StepError` when there is nothing to publish or the copy does not match;
    the old serving database then stays in place.
    """
    serving = settings.warehouse.serving_path
    make_dirs(serving.parent, settings.permissions.dir_mode, settings.permissions.group)
    tmp = temp_path_for(serving, run_id)
    remove_stale_temp_files(serving)
    _remove_database_files(tmp)
    source_db = con.execute("select current_database()").fetchall()[0][0]
    tables = [
        r[0]
        for r in con.execute(
            "select table_name from duckdb_tables() where database_name = ? and schema_name = ? "
            "and not temporary order by table_name",
            [source_db, SERVING_SCHEMA],
        ).fetchall()
    ]
    if not tables:
        raise StepError(
            f"There is no {SERVING_SCHEMA}.* table in the working database "
            f"{settings.warehouse.path}, so there is nothing to publish. The "
            "serving database was left as it was; run the whole pipeline."
        )
    apply_serving_views(con)
    if storage_version is not None and not re.fullmatch(r"v\d+\.\d+\.\d+", storage_version):
        raise ValueError(f"storage_version must look like v1.0.0, got {storage_version!r}")
    options = f" (storage_version {_literal(storage_version)})" if storage_version else ""
    alias = f"_publish_{uuid.uuid4().hex[:12]}"
    try:
        con.execute(f"attach {_literal(str(tmp))} as {alias}{options}")
        try:
            _copy_schema(con, source_db, alias, tables)
            con.execute(f"checkpoint {alias}")
        finally:
            con.execute(f"detach {alias}")  # closes the new file
    except BaseException:
        _remove_database_files(tmp)
        raise
    fsync_file(tmp)
    log.info("staged %d %s tables in %s", len(tables), SERVING_SCHEMA, tmp)
    return tmp


def _copy_schema(
    con: duckdb.DuckDBPyConnection, source_db: str, alias: str, tables: list[str]
) -> None:
    src, dst = f"{_ident(source_db)}.{SERVING_SCHEMA}", f"{alias}.{SERVING_SCHEMA}"
    con.execute(f"create schema {dst}")
    for table in tables:
        con.execute(f"create table {dst}.{_ident(table)} as select * from {src}.{_ident(table)}")
        declare_primary_key(con, f"{dst}.{_ident(table)}", table)
        # CREATE TABLE AS copies data, not comments; BI users read the comments.
        comment = con.execute(
            "select comment from duckdb_tables() where database_name = ? and schema_name = ? "
            "and table_name = ?",
            [source_db, SERVING_SCHEMA, table],
        ).fetchall()[0][0]
        if comment:
            con.execute(f"comment on table {dst}.{_ident(table)} is {_literal(comment)}")
        for column, col_comment in con.execute(
            "select column_name, comment from duckdb_columns() where database_name = ? "
            "and schema_name = ? and table_name = ? and comment is not null "
            "order by column_index",
            [source_db, SERVING_SCHEMA, table],
        ).fetchall():
            if col_comment:
                con.execute(
                    f"comment on column {dst}.{_ident(table)}.{_ident(column)} "
                    f"is {_literal(col_comment)}"
                )
        expected = con.execute(f"select count(*) from {src}.{_ident(table)}").fetchall()[0][0]
        copied = con.execute(f"select count(*) from {dst}.{_ident(table)}").fetchall()[0][0]
        if expected != copied:
            raise StepError(
                f"Publishing {SERVING_SCHEMA}.{table} copied {copied} of "
                f"{expected} rows; the serving database was left as it was."
            )
    views = con.execute(
        "select view_name, sql, comment from duckdb_views() where database_name = ? "
        "and schema_name = ? and not internal and not temporary order by view_name",
        [source_db, SERVING_SCHEMA],
    ).fetchall()
    if views:
        current_schema = con.execute("select current_schema()").fetchall()[0][0]
        # A view's stored SQL names marts.<table>; with the new file as the default
        # catalog it resolves to the copy, so the view works for BI on its own.
        con.execute(f"use {alias}")
        try:
            for name, sql, comment in views:
                con.execute(sql)
                if comment:
                    con.execute(
                        f"comment on view {SERVING_SCHEMA}.{_ident(name)} is {_literal(comment)}"
                    )
        finally:
            con.execute(f"use {_ident(source_db)}.{_ident(current_schema)}")


def _remove_database_files(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            p.unlink()
