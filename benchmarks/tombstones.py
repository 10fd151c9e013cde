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


if __name__ == "__main__":
    main()
