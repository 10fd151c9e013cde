"""The bucket stages on Dask through prefect-dask's DaskTaskRunner.

:func:`run_customer_sql` is the seam the per-customer steps call where they build a
table from SQL over ``core.*``: with ``[execution] runner = "local"`` it is
``run_sql`` on the warehouse, as always; with ``"dask"`` a Prefect flow maps
:func:`pipelines.execution.tasks.run_bucket_sql` over the buckets on the Dask cluster and
the flow process pools the bucket files into the same ``models.*`` table. A failed bucket
fails the flow, so the step fails and the run publishes nothing.

One LocalCluster serves every bucket stage of a run (starting one costs seconds): it is
started at the first stage and closed by :func:`close_cluster` when the run ends. With
``[execution] address`` the stages use that running scheduler instead.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipelines.config import Settings
from pipelines.errors import ConfigError
from pipelines.execution import buckets as bucket_files
from pipelines.execution import storage
from pipelines.execution.tasks import BucketFunction, run_bucket_function
from pipelines.sqlrun import read_sql, run_sql

log = logging.getLogger(__name__)

_cluster: Any = None  # the LocalCluster of the running run, if any


@dataclass
class StageTimes:
    """Seconds of the bucket stages of this process's runs, for the benchmark: per stage,
    its wall seconds and the summed seconds of its bucket tasks."""

    stages: list[dict[str, Any]] = field(default_factory=list)


STAGE_TIMES = StageTimes()


def scheduler_address(settings: Settings) -> str:
    """The scheduler the bucket stages use: ``[execution] address``, else a LocalCluster of
    ``[execution] workers`` processes (one thread each), started on first use."""
    global _cluster
    if settings.execution.address:
        _check_scheduler(settings.execution.address)
        return settings.execution.address
    if _cluster is None:
        from distributed import LocalCluster

        _cluster = LocalCluster(
            n_workers=settings.execution.workers,
            threads_per_worker=1,
            processes=True,
            # no fixed port: the HTTP (metrics) server binds any free one, so another
            # cluster on this host (8787 taken) is no error
            dashboard_address=":0",
        )
    return _cluster.scheduler_address


# how long the run waits for the scheduler at [execution] address to answer
CONNECT_TIMEOUT_SECONDS = 15
_answered: set[str] = set()  # addresses that answered in this process


def _check_scheduler(address: str) -> None:
    """A ConfigError naming ``execution.address`` when no scheduler answers there (before
    any bucket task is sent, instead of Prefect's failed task run after its own timeout)."""
    if address in _answered:
        return
    from distributed import Client

    try:
        with Client(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False):
            pass
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"execution.address {address!r}: no Dask scheduler answered within "
            f"{CONNECT_TIMEOUT_SECONDS} s ({type(exc).__name__}: {exc}). Start one there "
            "(`dask scheduler`, then `dask worker <address>` on each node), check the "
            "address and firewall, or remove `address` to run on a LocalCluster of "
            "`workers` processes on this host."
        ) from None
    _answered.add(address)


def close_cluster() -> None:
    """Close the LocalCluster :func:`scheduler_address` started, if any."""
    global _cluster
    if _cluster is not None:
        cluster, _cluster = _cluster, None
        cluster.close()


def worker_peak_rss() -> dict[str, int]:
    """Peak RSS in bytes (the kernel's high-water mark) of each worker of the LocalCluster
    this process started, by worker address; empty without one (for the benchmark)."""
    if _cluster is None:
        return {}
    from distributed import Client

    def peak() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    with Client(_cluster) as client:
        return client.run(peak)


def write_core_buckets(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, layer: str = "core"
) -> None:
    """After identity resolution: the core tables the bucket stages read, as bucket
    Parquet (:func:`pipelines.execution.buckets.write_buckets`); nothing for the local
    runner. ``layer="known_at"``: inside ``identity_as_known_at``, the tables as known
    then, for the churn step's training frames."""
    if settings.execution.runner == "dask":
        bucket_files.write_buckets(con, settings, run_id, layer)


def run_customer_sql(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    name: str,
    params: dict[str, Any],
) -> None:
    """Build the per-customer table of ``sql/<name>.sql`` (e.g. ``models/rfm`` ->
    ``models.rfm``) with ``params``: on the warehouse (local runner), or per bucket on the
    Dask workers, pooled into the same table of the warehouse (dask runner)."""
    if settings.execution.runner != "dask":
        run_sql(con, name, params)
        return
    _define_macros(con, name)
    results = map_buckets(settings, run_id, name, sql=(name, params))
    pool_table(con, name.replace("/", "."), results)


def map_buckets(
    settings: Settings,
    run_id: str,
    stage: str,
    *,
    fn: BucketFunction | None = None,
    kwargs: dict[str, Any] | None = None,
    sql: tuple[str, dict[str, Any]] | None = None,
    inputs: tuple[str, ...] = (),
    layer: str = "core",
) -> list[dict[str, Any]]:
    """Run one bucket stage on the Dask cluster: per bucket, ``fn(con, **kwargs)`` (see
    :func:`pipelines.execution.tasks.run_bucket_function`) or the SQL file ``sql = (name,
    params)``, each writing ``<run dir>/out/<stage's table>/bucket=<k>.parquet``.

    ``stage`` names the output (``models/clv_predictions`` -> folder ``clv_predictions``);
    ``inputs`` are earlier stages' outputs the tasks read as views besides the core
    tables (e.g. ``("models.clv_summary",)``); ``layer`` which core tables those are
    (:data:`pipelines.execution.buckets.LAYERS`: the warehouse's, or as known at the churn
    step's training date). Returns one dict per bucket, in bucket
    order (:func:`run_bucket_function`'s); raises the first failed bucket's error, after
    which the step fails and the run publishes nothing."""
    folder = bucket_files.run_dir(settings, run_id)
    tables = {t: storage.join(folder, layer, t) for t in bucket_files.LAYERS[layer]}
    for table in inputs:
        tables[table] = output_dir(settings, run_id, table)
    out_dir = output_dir(settings, run_id, stage)
    first = sql if sql is not None else (fn, kwargs or {})
    started = time.perf_counter()
    results = _run_apart(
        _bucket_flow(settings, sql is not None),
        first,
        list(range(settings.execution.buckets)),
        tables,
        str(out_dir),
    )
    results = sorted(results, key=lambda r: r["bucket"])
    wall = time.perf_counter() - started
    task_seconds = sum(r["seconds"] for r in results)
    STAGE_TIMES.stages.append(
        {
            "stage": stage,
            "wall_seconds": round(wall, 3),
            "task_seconds": round(task_seconds, 3),
            "buckets": len(results),
            "worker_pids": sorted({r["pid"] for r in results}),
        }
    )
    log.info(
        "%s: %d buckets on Dask in %.1f s (%.1f s of bucket tasks)",
        stage,
        len(results),
        wall,
        task_seconds,
    )
    return results


def write_frame_buckets(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    table: str,
    frame: pl.DataFrame,
) -> None:
    """A frame the flow process computed (one row per customer, column customer_id) as the
    bucket files of ``table`` (``schema.name``), which a later :func:`map_buckets` reads as
    an input: bucket k holds the rows of bucket k's customers. Complete before any task
    reads it (a URL's files are written locally, then uploaded)."""
    location = output_dir(settings, run_id, table)
    remote = storage.is_remote(location)
    local = Path(tempfile.mkdtemp(prefix="crm-frame-")) / "frame" if remote else Path(location)
    con.register("_bucket_frame", frame)
    try:
        bucket_files.write_partitioned(
            con, "_bucket_frame", "t.customer_id", settings.execution.buckets, local
        )
    finally:
        con.unregister("_bucket_frame")
    if remote:
        storage.upload_folder(local, location)
        shutil.rmtree(local.parent, ignore_errors=True)


def output_dir(settings: Settings, run_id: str, stage: str) -> str:
    """The location of a bucket stage's output files (``models/rfm``, ``models.rfm`` or
    ``rfm`` -> ``<run dir>/out/rfm``; a folder or a URL)."""
    table = stage.replace("/", ".").split(".")[-1]
    return storage.join(bucket_files.run_dir(settings, run_id), "out", table)


def pool_table(con: duckdb.DuckDBPyConnection, table: str, results: list[dict[str, Any]]) -> None:
    """``create or replace table <table>`` (``schema.name``) on the warehouse from the
    bucket files of :func:`map_buckets`, in bucket order."""
    schema = table.split(".")[0]
    with bucket_rows(results) as (query, params):
        con.execute(f"create schema if not exists {schema}")
        con.execute(f"create or replace table {table} as {query}", params)


def pool_frame(results: list[dict[str, Any]]) -> pl.DataFrame:
    """The bucket files of :func:`map_buckets` as one polars frame, in bucket order, for a
    stage whose output the flow process uses in Python rather than as a table."""
    with _local_files([r["path"] for r in results]) as paths:
        return pl.concat([pl.read_parquet(p) for p in paths], how="vertical")


@contextmanager
def bucket_rows(results: list[dict[str, Any]]) -> Iterator[tuple[str, dict]]:
    """``(query, params)``: a DuckDB query of every row of the bucket files of
    :func:`map_buckets`, in bucket order, to run inside the block (files at a URL are
    downloaded to a temporary folder first, removed after it)."""
    with _local_files([r["path"] for r in results]) as paths:
        yield "select * from read_parquet($paths)", {"paths": paths}


@contextmanager
def _local_files(paths: list[str]) -> Iterator[list[str]]:
    # bucket files at a URL are read from a temporary local copy, removed afterwards
    if not any(storage.is_remote(p) for p in paths):
        yield paths
        return
    scratch = Path(tempfile.mkdtemp(prefix="crm-pool-"))
    try:
        yield storage.fetch_files(paths, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_apart(fn, *args):
    """``fn(*args)`` outside the calling Prefect task's run context. Called from the
    flow's value task, the bucket flow would carry that task-run context, whose
    parameters (the run context, with the open warehouse connection) the DaskTaskRunner
    would have to serialise with every bucket task, and cannot. The bucket flow stays a
    subflow of the flow run (its flow-run context is kept)."""
    import contextvars

    from prefect.context import TaskRunContext

    def call():
        TaskRunContext.__var__.set(None)
        return fn(*args)

    return contextvars.copy_context().run(call)


def _define_macros(con: duckdb.DuckDBPyConnection, name: str) -> None:
    # the file's temp macros (clv_summary_at) must exist on the warehouse connection too:
    # the churn step reads the summary at its cutoffs through them
    for statement in con.extract_statements(read_sql(name)):
        if "temp macro" in statement.query.lower():
            con.execute(statement.query)


def task_runner(settings: Settings):
    """prefect-dask's DaskTaskRunner on the run's scheduler (:func:`scheduler_address`)."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=scheduler_address(settings))


def _sql_bucket(first, bucket, inputs, out_dir):
    from pipelines.execution.tasks import run_bucket_sql

    name, params = first
    return run_bucket_sql(name, params, bucket, inputs, out_dir)


def _function_bucket(first, bucket, inputs, out_dir):
    fn, kwargs = first
    return run_bucket_function(fn, kwargs, bucket, inputs, out_dir)


def _bucket_flow(settings: Settings, sql: bool):
    from prefect import flow, task, unmapped
    from prefect.cache_policies import NO_CACHE

    # retried once: a task whose worker died runs again on another (bucket files are
    # written under a temporary name, so a re-run is idempotent)
    bucket_task = task(
        _sql_bucket if sql else _function_bucket,
        name="bucket sql" if sql else "bucket function",
        cache_policy=NO_CACHE,
        retries=1,
    )

    @flow(name="crm_bucket_stage", task_runner=task_runner(settings), log_prints=False)
    def bucket_stage(first, buckets, inputs, out_dir) -> list[dict]:
        futures = bucket_task.map(unmapped(first), buckets, unmapped(inputs), unmapped(out_dir))
        # .result() raises the first failed bucket's error: the stage, and the step, fail
        return [f.result() for f in futures]

    return bucket_stage
