"""The bucket tasks, on a Dask worker: one piece of per-customer work on one customer bucket.

A task opens an in-memory DuckDB (never the warehouse) whose tables are views over the
bucket's Parquet files: ``core.<table>`` over the bucket files of the core tables
(:func:`pipelines.execution.buckets.write_buckets`) and ``<schema>.<table>`` over the same
bucket of an earlier stage's output. It then runs

- :func:`run_bucket_sql`: the SAME SQL file the local runner runs on the warehouse, or
- :func:`run_bucket_function`: a Python function given that connection,

and writes the table or frame it gives to ``<out>/bucket=<k>.parquet``, under a temporary
name renamed when complete (for a URL: uploaded once complete), so a task that Prefect runs
again after a worker died writes the same file again. Input files at a URL are downloaded
to a temporary folder of the worker first (:mod:`.storage`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from pipelines.execution import storage
from pipelines.execution.buckets import bucket_files
from pipelines.sqlrun import run_sql

#: ``fn(con, **kwargs)`` run on one bucket: a polars (or Arrow) frame, or a DuckDB relation,
#: of that bucket's customers
BucketFunction = Callable[..., Any]


def run_bucket_function(
    fn: BucketFunction,
    kwargs: dict[str, Any],
    bucket: int,
    inputs: dict[str, str],
    out_dir: str,
) -> dict[str, Any]:
    """Call ``fn(con, **kwargs)`` on bucket ``bucket`` and write what it returns.

    ``inputs`` maps a table name (``transactions`` for ``core.transactions``, or
    ``schema.table``) to the folder of its bucket files; ``con`` is an in-memory DuckDB
    with one view per entry over this bucket's files. ``fn`` must be importable (a
    module-level function): Dask sends it by reference.

    Returns ``{"bucket", "path", "rows", "seconds", "pid"}``: the Parquet file written, its
    rows, the task's wall seconds and the worker's process id."""
    started = time.perf_counter()
    remote_out = storage.is_remote(out_dir)
    scratch = Path(tempfile.mkdtemp(prefix=f"crm-bucket-{bucket}-"))
    final = storage.join(out_dir, f"bucket={bucket}.parquet")
    # a URL's object is uploaded from a local file once complete; a local file is renamed
    temporary = scratch / "out.parquet" if remote_out else Path(f"{final}.tmp-{os.getpid()}")
    con = duckdb.connect(":memory:")
    try:
        # one thread per task: the worker runs one task per thread it has
        con.execute("set threads = 1")
        _bucket_views(con, inputs, bucket, scratch)
        result = fn(con, **kwargs)
        temporary.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(result, duckdb.DuckDBPyRelation):
            result.write_parquet(str(temporary))
        else:
            con.register("_bucket_result", result)
            con.execute(f"copy _bucket_result to '{temporary}' (format parquet)")
            con.unregister("_bucket_result")
        # from the file's metadata: no second pass over the rows
        [(rows,)] = con.execute(
            "select count(*) from read_parquet($f)", {"f": str(temporary)}
        ).fetchall()
        if remote_out:
            storage.upload_file(temporary, final)
        else:
            os.replace(temporary, final)
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "bucket": bucket,
        "path": final,
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }


def run_bucket_sql(
    name: str,
    params: dict[str, object],
    bucket: int,
    inputs: dict[str, str],
    out_dir: str,
) -> dict[str, object]:
    """Run ``sql/<name>.sql`` (e.g. ``models/rfm``, which builds ``models.rfm``) with
    ``params`` on bucket ``bucket`` of the tables in ``inputs`` (see
    :func:`run_bucket_function`) and write the table it builds; returns the same dict."""
    return run_bucket_function(
        _sql_table, {"name": name, "params": params}, bucket, inputs, out_dir
    )


def _sql_table(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> duckdb.DuckDBPyRelation:
    run_sql(con, name, params)
    return con.table(name.replace("/", "."))


def _bucket_views(
    con: duckdb.DuckDBPyConnection, inputs: dict[str, str], bucket: int, scratch: Path
) -> None:
    schemas = set()
    for i, (table, folder) in enumerate(inputs.items()):
        schema, name = table.split(".") if "." in table else ("core", table)
        if schema not in schemas:
            con.execute(f"create schema if not exists {schema}")
            schemas.add(schema)
        files = (
            storage.fetch_bucket(folder, bucket, scratch / f"in-{i}")
            if storage.is_remote(folder)
            else bucket_files(folder, bucket)
        )
        con.execute(f"create view {schema}.{name} as select * from read_parquet('{files}')")
