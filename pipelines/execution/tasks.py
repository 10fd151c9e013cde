"""The bucket task: one SQL file of sql/ on one customer bucket, on a Dask worker.

It opens an in-memory DuckDB (never the warehouse), makes ``core.<table>`` views over the
bucket's Parquet files and runs the SAME SQL file the local runner runs on the warehouse;
the table it builds goes to ``<out>/bucket=<k>.parquet``, written under a temporary name
and renamed when complete, so a task that Prefect runs again after a worker died writes
the same file again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb

from pipelines.execution.buckets import bucket_files
from pipelines.sqlrun import run_sql


def run_bucket_sql(
    name: str,
    params: dict[str, object],
    bucket: int,
    inputs: dict[str, str],
    out_dir: str,
) -> dict[str, object]:
    """Run ``sql/<name>.sql`` (e.g. ``models/rfm``, which builds ``models.rfm``) with
    ``params`` on bucket ``bucket`` of the core tables in ``inputs`` (table -> folder
    written by :func:`pipelines.execution.buckets.write_buckets`).

    Returns ``{"bucket", "path", "rows", "seconds", "pid"}``: the Parquet file written,
    its rows, the task's wall seconds and the worker's process id."""
    started = time.perf_counter()
    schema, table = name.split("/")
    final = Path(out_dir) / f"bucket={bucket}.parquet"
    temporary = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    con = duckdb.connect(":memory:")
    try:
        # one thread per task: the worker runs one task per thread it has
        con.execute("set threads = 1")
        con.execute("create schema core")
        for core_table, folder in inputs.items():
            files = bucket_files(Path(folder), bucket)
            con.execute(f"create view core.{core_table} as select * from read_parquet('{files}')")
        run_sql(con, name, params)
        rows = con.execute(f"select count(*) from {schema}.{table}").fetchone()[0]
        final.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"copy {schema}.{table} to '{temporary}' (format parquet)")
    finally:
        con.close()
    os.replace(temporary, final)
    return {
        "bucket": bucket,
        "path": str(final),
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }
