"""Tombstone hashing at 1M seven-digit ids: the options for keyed tombstones
(pipelines/erasure_keys.py). Run: .venv/bin/python benchmarks/tombstones.py"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import duckdb
import pyarrow as pa

N = 1_000_000


def main() -> None:
    key = secrets.token_bytes(32)
    prefix = hmac.new(key, b"crm tombstones v1", hashlib.sha256).hexdigest()
    ids = [f"{i:07d}" for i in range(N)]
    t = time.perf_counter()
    [hmac.new(key, v.encode(), hashlib.sha256).hexdigest() for v in ids]
    print(f"HMAC-SHA256 in Python (hashlib), 1M ids: {time.perf_counter() - t:.2f} s")
    con = duckdb.connect()
    try:
        con.execute(f"create table t as select lpad(range::varchar, 7, '0') as v from range({N})")
        t = time.perf_counter()
        con.execute("select count(distinct sha256($k || v)) from t", {"k": prefix}).fetchall()
        print(f"sha256(prefix || v) in DuckDB, 1M ids: {time.perf_counter() - t:.2f} s")

        def scalar(v: str) -> str:
            return hmac.new(key, v.encode(), hashlib.sha256).hexdigest()

        def arrow(values):
            return pa.array(
                [hmac.new(key, v.as_py().encode(), hashlib.sha256).hexdigest() for v in values]
            )

        con.create_function("hmac_scalar", scalar, ["VARCHAR"], "VARCHAR")
        con.create_function("hmac_arrow", arrow, ["VARCHAR"], "VARCHAR", type="arrow")
        for name in ("hmac_scalar", "hmac_arrow"):
            t = time.perf_counter()
            con.execute(f"select count(distinct {name}(v)) from t").fetchall()
            print(f"HMAC as a DuckDB Python UDF ({name}), 1M ids: {time.perf_counter() - t:.2f} s")
    finally:
        con.close()


def ingest_filter(rows: int = 10_000_000, ids: int = 1_000_000) -> None:
    """The ingest filter's two forms (pipelines/load/mapping.py keep_out_rows): 10M rows of
    1M distinct ids, 1 in 997 ids tombstoned, inserted into a table."""
    con = duckdb.connect()
    try:
        con.execute(
            "create table tomb as select sha256('k' || lpad(range::varchar, 7, '0')) as h "
            f"from range(0, {ids}, 997)"
        )
        con.execute(
            f"create temp table st as select lpad((range % {ids})::varchar, 7, '0') as cid, "
            f"range::varchar as x from range({rows})"
        )
        match = "sha256('k' || nfc_normalize(trim({}))) in (select h from tomb)"
        forms = {
            "no filter": "select cid, x from st",
            "per row": f"select cid, x from st where not coalesce({match.format('cid')}, false)",
            "per distinct id (chosen)": (
                "select cid, x from st where cid is null or cid not in (select v from "
                "(select distinct cid as v from st where cid is not null) "
                f"where {match.format('v')})"
            ),
        }
        for name, query in forms.items():
            con.execute("create or replace table out (cid varchar, x varchar)")
            t = time.perf_counter()
            con.execute(f"insert into out {query}")
            print(f"ingest filter, {name}, 10M rows: {time.perf_counter() - t:.2f} s")
    finally:
        con.close()


if __name__ == "__main__":
    main()
    ingest_filter()
