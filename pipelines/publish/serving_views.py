"""What the serving database declares besides its tables: the ``marts.*_latest`` views
(``sql/serving/latest_views.sql``) and primary keys where DuckDB enforces them.

:mod:`pipelines.publish.serving` calls :func:`apply_serving_views` on the working
database before it copies the ``marts`` schema (views included), and
:func:`declare_primary_key` on each copied table.
"""

from __future__ import annotations

import logging
import re

import duckdb

from pipelines.sqlrun import read_sql

log = logging.getLogger(__name__)


def apply_serving_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create (or replace) the ``marts.<history table>_latest`` views in the working
    database: each history table's rows of the published run (``marts.customer_360``'s).
    A view (and its comment) whose tables are not there, or have no run_id, is left out.
    Returns the views."""
    made = []
    text = re.sub(r"--[^\n]*", "", read_sql("serving/latest_views"))
    for statement in text.split(";"):
        tables = re.findall(r"marts\.(\w+)", statement)
        if not tables:
            continue
        view, *read = tables
        if all(_has_run_id(con, t) for t in read) or (
            statement.lstrip().startswith("comment") and view in made
        ):
            con.execute(statement)
            made += [view] if not statement.lstrip().startswith("comment") else []
    return made


def _has_run_id(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute(
            "select 1 from duckdb_columns() where database_name = current_database() "
            "and schema_name = 'marts' and table_name = ? and column_name = 'run_id'",
            [table],
        ).fetchall()
    )


def primary_key(table: str) -> tuple[str, ...]:
    """The key of ``marts.<table>``: ``customer_id`` for ``customer_360`` (one row per
    customer), ``run_id`` and the contract's grain for a history table."""
    from pipelines import marts

    grain = tuple(marts.GRAINS[table])
    return grain if table == "customer_360" else ("run_id", *grain)


def declare_primary_key(con: duckdb.DuckDBPyConnection, qualified_table: str, table: str) -> bool:
    """Declare :func:`primary_key` on the copied ``qualified_table`` so DuckDB enforces it
    and BI tools (DBeaver, Metabase) see it. A grain whose columns hold NULLs in these rows
    (a data_quality measure without a rule, say) cannot be a SQL primary key: the table is
    left without one and that is logged. Returns whether the key was declared."""
    from pipelines import marts

    if table not in marts.GRAINS:
        return False
    key = primary_key(table)
    columns = ", ".join('"' + c.replace('"', '""') + '"' for c in key)
    try:
        nulls = con.execute(
            f"select count(*) from {qualified_table} where "
            + " or ".join(f"{c} is null" for c in columns.split(", "))
        ).fetchall()[0][0]
    except duckdb.BinderException:  # a table not of its contract's shape: no key to declare
        log.info("marts.%s: no primary key: it lacks a column of %s", table, key)
        return False
    if nulls:
        log.info("marts.%s: no primary key (%s): %d rows have a NULL in it", table, key, nulls)
        return False
    con.execute(f"alter table {qualified_table} add primary key ({columns})")
    return True
