"""The working DuckDB database: one connection with the configured memory limit, spill
directory and threads."""

from __future__ import annotations

import duckdb

from pipelines.config import Settings


def connect_warehouse(settings: Settings) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the working database with the configured limits.

    DuckDB gets a memory limit and a spill directory so that a large group-by spills to
    disk instead of failing; timestamps are handled in UTC.
    """
    wh = settings.warehouse
    wh.path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(wh.path))
    con.execute("set memory_limit = ?", [wh.memory_limit])
    temp_dir = wh.temp_directory or wh.path.parent / "duckdb_tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    con.execute("set temp_directory = ?", [str(temp_dir)])
    if wh.threads:
        con.execute(f"set threads = {int(wh.threads)}")
    con.execute("set TimeZone = 'UTC'")
    return con
