"""The bucket task seam (pipelines/execution/tasks.py) without a cluster: a function or an SQL
file on one bucket reads only that bucket's files, core tables and earlier outputs alike."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from pipelines.execution.buckets import bucket_of
from pipelines.execution.tasks import run_bucket_function


def _write_bucketed(root: Path, buckets: int) -> tuple[Path, list[str]]:
    ids = [f"c{i}" for i in range(40)]
    con = duckdb.connect()
    try:
        con.execute(
            "create table t as select customer_id, 10 * i as amount "
            "from (select unnest($ids) as customer_id, unnest(range(40)) as i)",
            {"ids": ids},
        )
        folder = root / "core" / "transactions"
        folder.parent.mkdir(parents=True)
        con.execute(
            f"copy (select *, ((('0x' || left(md5(customer_id), 15))::bigint) % {buckets}) "
            f"as bucket from t) to '{folder}' (format parquet, partition_by (bucket))"
        )
        con.execute(f"copy (select * from t limit 0) to '{folder / '_empty.parquet'}'")
    finally:
        con.close()
    return folder, ids


def totals(con: duckdb.DuckDBPyConnection, factor: int) -> pl.DataFrame:
    return con.sql(
        "select customer_id, sum(amount) * $f as total from core.transactions group by all",
        params={"f": factor},
    ).pl()


def with_rank(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    return con.sql("select customer_id, total + 1 as total_plus from models.totals")


def test_a_bucket_function_sees_its_bucket_only_and_later_stages_read_earlier_outputs(tmp_path):
    buckets = 4
    folder, ids = _write_bucketed(tmp_path, buckets)
    out = tmp_path / "out" / "totals"
    results = [
        run_bucket_function(totals, {"factor": 2}, b, {"transactions": str(folder)}, str(out))
        for b in range(buckets)
    ]
    seen = []
    for b, result in enumerate(results):
        frame = pl.read_parquet(result["path"])
        assert result["rows"] == frame.height
        assert all(bucket_of(c, buckets) == b for c in frame["customer_id"])
        seen += frame["customer_id"].to_list()
    assert sorted(seen) == sorted(ids)  # every customer once, in the bucket of its id

    later = [
        run_bucket_function(
            with_rank,
            {},
            b,
            {"transactions": str(folder), "models.totals": str(out)},
            str(tmp_path / "out" / "plus"),
        )
        for b in range(buckets)
    ]
    pooled = pl.concat([pl.read_parquet(r["path"]) for r in later]).sort("customer_id")
    expected = {c: 20 * int(c[1:]) + 1 for c in ids}
    assert dict(zip(pooled["customer_id"], pooled["total_plus"], strict=True)) == expected
    # no temporary file is left beside the outputs
    assert not list((tmp_path / "out").rglob("*.tmp-*"))


def test_a_rerun_of_a_bucket_replaces_its_file_with_the_same_rows(tmp_path):
    folder, _ = _write_bucketed(tmp_path, 2)
    out = tmp_path / "out" / "totals"
    first = run_bucket_function(totals, {"factor": 1}, 1, {"transactions": str(folder)}, str(out))
    before = pl.read_parquet(first["path"]).sort("customer_id")
    # a file half written by a worker that died is left under its temporary name
    Path(first["path"] + ".tmp-999").write_bytes(b"PAR1 half")
    again = run_bucket_function(totals, {"factor": 1}, 1, {"transactions": str(folder)}, str(out))
    assert again["path"] == first["path"]
    assert pl.read_parquet(again["path"]).sort("customer_id").equals(before)
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".tmp-999")) == [
        "bucket=1.parquet"
    ]
