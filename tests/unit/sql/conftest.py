"""Fixtures for the rows-in/rows-out tests of the SQL files (one file, one test table set).

Each test builds the tables a SQL file reads by hand, in an in-memory DuckDB, runs that one
file with ``pipelines.sqlrun.run_sql`` and compares the exact rows it wrote."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import duckdb
import pytest

from pipelines.sqlrun import ensure_bookkeeping_tables, install_macros


@pytest.fixture
def con():
    """An in-memory DuckDB with sql/macros.sql and the bookkeeping tables (raw.files, ...)."""
    connection = duckdb.connect()
    install_macros(connection)
    ensure_bookkeeping_tables(connection)
    yield connection
    connection.close()


@pytest.fixture
def table(con):
    """``table(name, "col type, ...", rows)``: create schema.table and insert the rows."""

    def make(name: str, columns: str, rows: Iterable[Sequence] = ()) -> None:
        schema = name.split(".")[0]
        con.execute(f"create schema if not exists {schema}")
        con.execute(f"create table {name} ({columns})")
        rows = list(rows)
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            con.executemany(f"insert into {name} values ({marks})", rows)

    return make


@pytest.fixture
def insert(con):
    """``insert(name, "col, ...", rows)``: add rows to an existing (bookkeeping) table."""

    def add(name: str, columns: str, rows: Iterable[Sequence]) -> None:
        rows = list(rows)
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"insert into {name} ({columns}) values ({marks})", rows)

    return add


@pytest.fixture
def rows(con):
    """``rows(sql)``: the result rows of a query, as a list of tuples."""

    def fetch(sql: str) -> list[tuple]:
        return con.execute(sql).fetchall()

    return fetch
