"""Run the project's SQL files: ``sql/<schema>/<table>.sql`` builds ``<schema>.<table>``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

import duckdb

from pipelines.assets import asset_dir

SQL_DIR = asset_dir("sql")


@cache
def read_sql(name: str) -> str:
    """Text of ``sql/<name>.sql`` (``name`` like ``core/transactions``)."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def run_sql(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> None:
    """Execute one SQL file, passing only the named parameters it uses."""
    text = read_sql(name)
    used = set(re.findall(r"\$([a-z_][a-z0-9_]*)", text))
    given = {k: v for k, v in (params or {}).items() if k in used}
    missing = used - set(given)
    if missing:
        raise ValueError(f"sql/{name}.sql needs parameters {sorted(missing)}")
    schema = name.split("/")[0]
    if schema in ("staging", "core", "models", "marts", "quarantine", "audit"):
        con.execute(f"create schema if not exists {schema}")
    ensure_macros(con, text)
    con.execute(text, given) if given else con.execute(text)


MACRO_FILES = ("macros", "macros_core", "macros_identity")


@cache
def _macro_names(file: str) -> tuple[str, ...]:
    return tuple(re.findall(r"create or replace (?:temp )?macro (\w+)", read_sql(file)))


def ensure_macros(con: duckdb.DuckDBPyConnection, text: str) -> None:
    """Install the macro files whose macros ``text`` calls and this database lacks: the
    clean step installs sql/macros.sql, sql/macros_core.sql needs core to exist first."""
    wanted = [
        f for f in MACRO_FILES if any(re.search(rf"\b{m}\s*\(", text) for m in _macro_names(f))
    ]
    if not wanted:
        return
    present = {
        r[0]
        for r in con.execute(
            "select distinct function_name from duckdb_functions() "
            "where function_type in ('macro', 'table_macro')"
        ).fetchall()
    }
    for file in wanted:
        if not set(_macro_names(file)) <= present:
            con.execute(read_sql(file))


def has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists in the connection's current database."""
    return bool(
        con.execute(
            "select 1 from information_schema.tables where table_catalog = current_database() "
            "and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    )


def ensure_bookkeeping_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create every bookkeeping table the warehouse keeps (``sql/warehouse/bookkeeping.sql``,
    the one list of them) that does not exist yet."""
    con.execute(read_sql("warehouse/bookkeeping"))


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Create the parsing macros of ``sql/macros.sql`` on this connection."""
    con.execute(read_sql("macros"))
