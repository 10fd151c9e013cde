"""Customer buckets: the core tables the per-customer stages read, as Parquet files
partitioned by a stable hash of the resolved customer id.

Layout under the run's folder (:func:`run_dir`; a local folder or a URL, see :mod:`.storage`)::

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
from pipelines.execution import storage

# The core tables the bucketed SQL reads (sql/models/rfm.sql, clv_summary.sql,
# clv_holdout.sql, churn_features.sql), each with the expression of the resolved customer id its rows are
# bucketed by. A customer record is keyed by its source id: its bucket is that of the
# customer it was resolved to. Rows without a customer (an event of an unknown visitor)
# go to bucket 0 rather than nowhere; no per-customer SQL reads them.
BUCKETED_TABLES = {
    "transactions": "customer_id",
    "customers": "customer_id",
    "customer_map": "customer_id",
    "customer_records": (
        "(select m.customer_id from core.customer_map m where m.source_customer_id = t.customer_id)"
    ),
    "events": "customer_id",
}

# The tables the churn step's training frames read (churn features and labels at its
# validation cutoffs), as known at its training date: the views of
# pipelines.core.identity.identity_as_known_at, keyed by the customer as identified then.
KNOWN_AT_TABLES = ("transactions", "events", "customer_records", "customer_map")

#: the folder of a run's bucket files -> the tables in it (see :func:`write_buckets`)
LAYERS = {"core": tuple(BUCKETED_TABLES), "known_at": KNOWN_AT_TABLES}

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


def storage_root(settings: Settings) -> str:
    """Where bucket files go: ``[execution] storage`` (a folder, or an fsspec URL such as
    ``s3://bucket/crm``, see :mod:`.storage`), else ``buckets/`` beside the warehouse."""
    location = settings.execution.storage
    if location is None:
        return str(settings.warehouse.path.parent / "buckets")
    if location.startswith("file://"):
        return location.removeprefix("file://")
    if storage.is_remote(location):
        storage.filesystem(location)  # a ConfigError now when its package is missing
    return location


def run_dir(settings: Settings, run_id: str) -> str:
    """The location of one run's bucket files (inputs under ``core/``, outputs under ``out/``)."""
    return storage.join(storage_root(settings), f"run-{run_id}")


def write_buckets(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, layer: str = "core"
) -> dict[str, str]:
    """Write every table of the layer (:data:`LAYERS`) from ``core.*`` as bucket Parquet
    under ``<run dir>/<layer>/``; returns table -> its location. Earlier runs' folders are
    removed (their work is done). ``core.*`` are the tables the connection names so: the
    warehouse's, or inside ``identity_as_known_at`` the views as known then ("known_at").

    For a URL the files are written in a local staging folder beside the warehouse and
    uploaded: the run's folder is new (named by its run id) and no task starts before the
    upload is complete, so no task reads half a table."""
    root = storage_root(settings)
    for old in storage.folders(root):
        name = old.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("run-") and name != f"run-{run_id}":
            storage.remove(old)
    remote = storage.is_remote(root)
    local_run = (
        settings.warehouse.path.parent / "buckets-staging" / f"run-{run_id}"
        if remote
        else Path(run_dir(settings, run_id))
    )
    buckets = settings.execution.buckets
    folders = {}
    for table in LAYERS[layer]:
        write_partitioned(
            con, f"core.{table}", BUCKETED_TABLES[table], buckets, local_run / layer / table
        )
        folders[table] = storage.join(run_dir(settings, run_id), layer, table)
    if remote:
        storage.upload_folder(local_run / layer, storage.join(run_dir(settings, run_id), layer))
        shutil.rmtree(local_run.parent, ignore_errors=True)
    return folders


def write_partitioned(
    con: duckdb.DuckDBPyConnection, table: str, key: str, buckets: int, final: Path
) -> None:
    """Write ``table`` (a table or view name on ``con``) as the local folder ``final`` of
    bucket files: ``bucket=<k>/`` by the bucket of the customer id expression ``key``
    (over the table's rows as ``t``; NULL counts as ''), and ``_empty.parquet``. Written
    into ``<final>.tmp-<pid>`` and renamed when complete."""
    temporary = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    bucket = bucket_sql(f"coalesce({key}, '')", buckets)
    con.execute(
        f"copy (select t.*, {bucket} as bucket from {table} t) "
        f"to '{temporary}' (format parquet, partition_by (bucket))"
    )
    con.execute(
        f"copy (select * from {table} limit 0) to '{temporary / '_empty.parquet'}' (format parquet)"
    )
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)


def bucket_files(folder: str | Path, bucket: int) -> str:
    """The local Parquet file or glob of one bucket of a table: a core table's folder
    written by :func:`write_buckets` (``bucket=<k>/``, its ``_empty.parquet`` when the bucket
    has no rows), or a stage's output folder (``bucket=<k>.parquet``, one per bucket).
    ``folder`` is local (see :func:`.storage.fetch_bucket` for a URL)."""
    folder = Path(folder)
    part = folder / f"bucket={bucket}"
    if part.is_dir():
        return str(part / "*.parquet")
    output = folder / f"bucket={bucket}.parquet"
    return str(output) if output.exists() else str(folder / "_empty.parquet")
