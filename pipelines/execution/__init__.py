"""Where the per-customer stages run (issue 13, ``[execution]`` in crm.toml).

With ``runner = "local"`` nothing here is used: the stages run their SQL on the warehouse
connection, as always. With ``runner = "dask"``:

- :mod:`.buckets`: after identity resolution, the core tables the per-customer SQL reads
  are written as Parquet, one folder per customer bucket (a stable hash of the resolved
  customer id);
- :mod:`.tasks`: a bucket task runs the SAME SQL file on one bucket, in an in-memory DuckDB
  whose ``core`` schema is views over that bucket's files, and writes its table as Parquet;
- :mod:`.runner`: the Prefect flow that maps the bucket task over the buckets on prefect-dask's
  DaskTaskRunner (a LocalCluster per run, or a running scheduler), and pools the results
  into the warehouse. Only the flow process opens the warehouse.
"""

from pipelines.execution.runner import close_cluster, run_customer_sql, write_core_buckets

__all__ = ["close_cluster", "run_customer_sql", "write_core_buckets"]
