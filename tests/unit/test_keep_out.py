"""The ingest filter's SQL (pipelines/load/mapping.py keep_out_rows, KeepOut): on a
hand-made stage table in an in-memory database."""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from pipelines.erasure_keys import derive_key
from pipelines.erasure_rows import KeepOut
from pipelines.load.mapping import keep_out_rows

KEY = derive_key("k" * 40)
# a reader's select: the lineage parameters, then the mapped fields
SELECT = (
    "select $_file_sha256 as f, $_source_file as s, $_ingested_at as i, $_run_id as r, "
    "customer_id, n from _ingest_stage"
)
LINEAGE = {"_file_sha256": "f", "_source_file": "x.csv", "_ingested_at": None, "_run_id": "r"}


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("create schema audit")
    c.execute(
        "create table audit.erasure_tombstones (kind varchar, value_sha256 varchar, "
        "erased_at timestamp, key_id varchar)"
    )
    # tombstoned, computed here independently: sha256(prefix || normalised value)
    for kind, value in (("customer_id", "C2"), ("email", "gone@example.com")):
        c.execute(
            "insert into audit.erasure_tombstones values (?, ?, now(), ?)",
            [kind, hashlib.sha256((KEY.prefix + value).encode()).hexdigest(), KEY.key_id],
        )
    c.execute(
        "create table _ingest_stage as select * from (values "
        "('C1', 1), ('C2', 2), (null, 3), ('C3', 4), ('C2', 5)) t(customer_id, n)"
    )
    yield c
    c.close()


def test_rows_of_tombstoned_ids_are_left_out_and_the_rest_kept(con):
    select = SELECT
    query, params = keep_out_rows(select, {**LINEAGE, "keep_out": KeepOut((KEY,))})
    kept = con.execute(f"select n from ({query}) order by n", params).fetchall()
    assert kept == [(1,), (3,), (4,)]  # the row without an id is kept (quarantined later)
    # without tombstones the select is unchanged
    query, params = keep_out_rows(select, {**LINEAGE, "keep_out": None})
    assert query == select and set(params) == set(LINEAGE)


def test_a_key_the_tombstones_do_not_use_matches_nothing(con):
    other = derive_key("o" * 40)
    query, params = keep_out_rows(SELECT, {**LINEAGE, "keep_out": KeepOut((other,))})
    assert len(con.execute(query, params).fetchall()) == 5


def test_a_rejected_line_with_a_tombstoned_field_matches(con):
    condition, params = KeepOut((KEY,)).line_condition("line")
    lines = ["C1;x;y", "C2;x", '"Gone@Example.com",1', "nobody"]
    hits = con.execute(
        f"select line from (select unnest($lines::varchar[]) as line) where {condition}",
        {**params, "lines": lines},
    ).fetchall()
    assert sorted(h[0] for h in hits) == ['"Gone@Example.com",1', "C2;x"]
