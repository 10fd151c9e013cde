"""Compacting a DuckDB database file, so that deleted values are gone from its bytes.

Used by :func:`pipelines.erasure.forget` after the rows of a person are deleted.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import duckdb

from pipelines.erasure_rows import _q
from pipelines.errors import StepError
from pipelines.files import copy_permissions, fsync_dir, fsync_file


def compact_database(path: Path) -> Path:
    """Rewrite the DuckDB database at ``path`` into a fresh file and swap it in.

    DuckDB reuses freed blocks but neither shrinks the file nor zeroes them, so deleted
    values stay readable in the file's bytes. ``COPY FROM DATABASE`` into a new file copies
    the live rows only (with schemas, views, sequences, macros, constraints and comments);
    the new file then replaces the old one with :func:`os.replace`.

    No connection to ``path`` may be open, in this process or another: the function
    fails with a clear error otherwise (DuckDB's file lock), instead of swapping the file
    under a writer. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.compact-{uuid.uuid4().hex[:8]}")
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        if p.exists():
            p.unlink()
    con = duckdb.connect(":memory:")
    src_attached = False
    try:
        try:
            # Read-write: the lock it takes keeps every other process out until the swap.
            con.execute(f"attach '{_sql_text(path)}' as compact_src")
        except duckdb.Error as exc:
            raise StepError(
                f"Cannot compact {path}: it is open elsewhere ({exc}). Stop the "
                "pipeline or the program holding it and retry."
            ) from exc
        src_attached = True
        con.execute("checkpoint compact_src")
        con.execute(f"attach '{_sql_text(tmp)}' as compact_dst")
        con.execute("copy from database compact_src to compact_dst")
        _check_copy(con)
        con.execute("checkpoint compact_dst")
        con.execute("detach compact_dst")
        copy_permissions(path, tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        con.execute("detach compact_src")  # the old inode; it has no unsaved changes
        src_attached = False
    except BaseException:
        if src_attached:
            con.execute("detach compact_src")
        for p in (tmp, tmp.with_name(tmp.name + ".wal")):
            if p.exists():
                p.unlink()
        raise
    finally:
        con.close()
    wal = path.with_name(path.name + ".wal")
    if wal.exists():  # a WAL of the old file must not be replayed onto the new one
        wal.unlink()
    return path


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def _check_copy(con) -> None:
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = 'compact_src' order by 1, 2"
    ).fetchall()
    for schema, table in tables:
        a = con.execute(f"select count(*) from compact_src.{_q(schema)}.{_q(table)}").fetchall()[0][
            0
        ]
        b = con.execute(f"select count(*) from compact_dst.{_q(schema)}.{_q(table)}").fetchall()[0][
            0
        ]
        if a != b:
            raise StepError(
                f"Compaction copied {b} of {a} rows of {schema}.{table}; the "
                "database was left as it was."
            )
