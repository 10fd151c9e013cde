"""The run's Great Expectations Data Docs beside the report, and the report's link to them."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from pipelines.config import load_settings
from pipelines.publish.data_docs import write_data_docs


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("create schema audit")
    connection.execute("""
        create table audit.validation_results (run_id varchar, source varchar, rule varchar,
            expectation_type varchar, column_name varchar, severity varchar, success boolean,
            element_count bigint, unexpected_count bigint, validated_at timestamp)""")
    connection.execute("""
        insert into audit.validation_results values
        ('run-6', 'customers', 'customer_id_present', 'x', 'customer_id', 'row', true, 10, 0, now()),
        ('run-7', 'customers', 'customer_id_present', 'x', 'customer_id', 'row', false, 40, 3, now()),
        ('run-7', 'customers', 'email_shape', 'x', 'email', 'field', true, 40, 0, now()),
        ('run-7', 'transactions', 'customer_id_present', 'x', 'customer_id', 'row', true, 5, 0, now())
    """)
    yield connection
    connection.close()


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def test_one_page_per_validation_run_with_the_runs_counts(con, tmp_path):
    index = write_data_docs(con, load_settings(None), "run-7", tmp_path / "data_docs")
    assert index == tmp_path / "data_docs" / "index.html"
    pages = sorted((index.parent / "validations").rglob("*.html"))
    # one page per source the run validated, all of run-7 (run-6 is another run)
    assert [p.relative_to(index.parent / "validations").parts[:2] for p in pages] == [
        ("customers_suite", "run-7"),
        ("transactions_suite", "run-7"),
    ]
    customers = _text(pages[0])
    assert "3 unexpected values found. 7.5% of 40 total rows." in customers
    assert "Status: Failed" in customers and "Successful Expectations 1" in customers
    assert "customers_suite" in _text(index)


def test_a_run_that_validated_nothing_has_no_data_docs(con, tmp_path):
    assert write_data_docs(con, load_settings(None), "run-8", tmp_path / "data_docs") is None
    assert not (tmp_path / "data_docs").exists()
