"""Where the per-customer stages run (issue 13, ``[execution]`` in crm.toml).

With ``runner = "local"`` nothing here is used: the stages run their SQL on the warehouse
connection, as always. With ``runner = "dask"``:

- :mod:`.buckets`: after identity resolution, the core tables the per-customer SQL reads
  are written as Parquet, one folder per customer bucket (a stable hash of the resolved
  customer id);
- :mod:`.tasks`: a bucket task runs the SAME SQL file, or a Python function, on one
  bucket, in an in-memory DuckDB whose tables are views over that bucket's files (the core
  tables, and earlier stages' outputs), and writes its table as Parquet;
- :mod:`.runner`: the Prefect flow that maps the bucket task over the buckets on prefect-dask's
  DaskTaskRunner (a LocalCluster per run, or a running scheduler) (:func:`map_buckets`),
  and pools the results into the warehouse (:func:`pool_table`), one frame
  (:func:`pool_frame`) or a query of the flow's (:func:`bucket_rows`). Only the flow process
  opens the warehouse.
"""

from pipelines.config import Settings
from pipelines.execution.runner import (
    bucket_rows,
    close_cluster,
    map_buckets,
    output_dir,
    pool_frame,
    pool_table,
    run_customer_sql,
    write_core_buckets,
    write_frame_buckets,
)


def on_dask(settings: Settings) -> bool:
    """Whether this run's per-customer stages run on Dask (``[execution] runner``)."""
    return settings.execution.runner == "dask"


__all__ = [
    "bucket_rows",
    "close_cluster",
    "map_buckets",
    "on_dask",
    "output_dir",
    "pool_frame",
    "pool_table",
    "run_customer_sql",
    "write_core_buckets",
    "write_frame_buckets",
]
