"""The serving database's ``marts.*_latest`` views and primary keys."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.config import load_settings
from pipelines.publish import serving
from tests.helpers import TX_COLUMNS, write_config


@pytest.fixture
def settings(tmp_path):
    body = f'[sources.transactions]\npath = "tx*.csv"\nformat = "csv"\n{TX_COLUMNS}'
    return load_settings(write_config(tmp_path, body))


@pytest.fixture
def con(settings):
    settings.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(str(settings.warehouse.path))
    connection.execute("create schema marts")
    # customer_360 holds the published run (run-2); segment_summary keeps every run
    connection.execute("""
        create table marts.customer_360 as
        select 'c' || i as customer_id, 'run-2' as run_id from range(3) t(i)""")
    connection.execute("""
        create table marts.segment_summary as
        select * from (values ('run-1', 'value_tier', 'key', 5), ('run-2', 'value_tier', 'key', 7),
                              ('run-2', 'value_tier', 'general', 2))
            t(run_id, dimension, segment, customers)""")
    # a grain column with a NULL cannot be a primary key
    connection.execute("""
        create table marts.model_metrics as
        select 'run-2' as run_id, 'bgnbd' as model, null::varchar as metric, 1.0 as value""")
    yield connection
    connection.close()


def test_a_latest_view_shows_the_published_runs_rows_of_a_history_table(settings, con):
    path = serving.publish_serving_database(con, settings, "run-2")
    reader = duckdb.connect(str(path), read_only=True)
    try:
        rows = reader.execute(
            "select run_id, segment, customers from marts.segment_summary_latest order by 2"
        ).fetchall()
        comment = reader.execute(
            "select comment from duckdb_views() where view_name = 'segment_summary_latest'"
        ).fetchall()
        views = {r[0] for r in reader.execute("select view_name from duckdb_views()").fetchall()}
    finally:
        reader.close()
    assert rows == [("run-2", "general", 2), ("run-2", "key", 7)]
    assert comment == [("marts.segment_summary, rows of the published run only.",)]
    # tables that are not there get no view
    assert "model_metrics_latest" in views and "kpi_monthly_latest" not in views


def test_keys_are_declared_and_enforced_where_the_grain_has_no_nulls(settings, con):
    path = serving.publish_serving_database(con, settings, "run-2")
    reader = duckdb.connect(str(path))
    try:
        keys = reader.execute(
            "select table_name, constraint_column_names from duckdb_constraints() "
            "where constraint_type = 'PRIMARY KEY' order by 1"
        ).fetchall()
        with pytest.raises(duckdb.ConstraintException):
            reader.execute("insert into marts.customer_360 values ('c1', 'run-2')")
    finally:
        reader.close()
    assert keys == [
        ("customer_360", ["customer_id"]),
        ("segment_summary", ["run_id", "dimension", "segment"]),
    ]
