"""Customer buckets: the core tables the per-customer stages read, as Parquet files
partitioned by a stable hash of the resolved customer id.

Layout under the run's folder (:func:`run_dir`)::

    core/<table>/bucket=<k>/data_0.parquet   the rows of bucket k (absent: no rows)
    core/<table>/_empty.parquet              no rows, the table's columns (for empty buckets)

Each table is written into ``<table>.tmp-<pid>`` and renamed when complete, so a folder
that exists is whole, and writing it again (a re-run) replaces nothing half written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.errors import ConfigError

# The core tables the bucketed SQL reads (sql/models/rfm.sql, clv_summary.sql); each has the
# resolved customer_id.
BUCKETED_TABLES = ("transactions",)

# The first 15 hex digits of md5(customer_id) fit a BIGINT; md5 is the same in every DuckDB
# version and in Python (hashlib), unlike DuckDB's hash(), which may change between versions.
HEX_DIGITS = 15


def bucket_sql(column: str, buckets: int) -> str:
    """The SQL expression of a customer's bucket, 0..buckets-1 (see :func:`bucket_of`)."""
    return f"(('0x' || left(md5({column}::varchar), {HEX_DIGITS}))::bigint % {int(buckets)})"


def bucket_of(customer_id: str, buckets: int) -> int:
    """The bucket of ``customer_id`` among ``buckets``: the first 15 hex digits of its
    md5 as a number, modulo ``buckets`` (the same as :func:`bucket_sql`)."""
    return int(hashlib.md5(customer_id.encode("utf-8")).hexdigest()[:HEX_DIGITS], 16) % buckets


def storage_root(settings: Settings) -> Path:
    """Where bucket files go: ``[execution] storage``, else ``buckets/`` beside the
    warehouse. Only local folders are written in this version."""
    storage = settings.execution.storage
    if storage is None:
        return settings.warehouse.path.parent / "buckets"
    if "://" in storage:
        if storage.startswith("file://"):
            return Path(storage.removeprefix("file://"))
        raise ConfigError(
            f"execution.storage {storage!r}: only local (or shared, mounted) folders are "
            "supported so far; mount the storage on every node and give its path."
        )
    return Path(storage)


def run_dir(settings: Settings, run_id: str) -> Path:
    """The folder of one run's bucket files (inputs under ``core/``, outputs under ``out/``)."""
    return storage_root(settings) / f"run-{run_id}"


def write_buckets(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str
) -> dict[str, Path]:
    """Write every table of :data:`BUCKETED_TABLES` from ``core.*`` as bucket Parquet;
    returns table -> its folder. Earlier runs' folders are removed (their work is done)."""
    root = storage_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob("run-*"):
        if old.name != f"run-{run_id}":
            shutil.rmtree(old, ignore_errors=True)
    buckets = settings.execution.buckets
    folders = {}
    for table in BUCKETED_TABLES:
        final = run_dir(settings, run_id) / "core" / table
        temporary = final.with_name(f"{table}.tmp-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        con.execute(
            f"copy (select *, {bucket_sql('customer_id', buckets)} as bucket "
            f"from core.{table}) to '{temporary}' (format parquet, partition_by (bucket))"
        )
        con.execute(
            f"copy (select * from core.{table} limit 0) to '{temporary / '_empty.parquet'}' "
            "(format parquet)"
        )
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        folders[table] = final
    return folders


def bucket_files(folder: Path, bucket: int) -> str:
    """The Parquet file or glob of one bucket of a table: a core table's folder written by
    :func:`write_buckets` (``bucket=<k>/``, its ``_empty.parquet`` when the bucket has no
    rows), or a stage's output folder (``bucket=<k>.parquet``, one per bucket)."""
    part = folder / f"bucket={bucket}"
    if part.is_dir():
        return str(part / "*.parquet")
    output = folder / f"bucket={bucket}.parquet"
    return str(output) if output.exists() else str(folder / "_empty.parquet")
