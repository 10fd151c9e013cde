"""The model log: every fitted model's parameters and metrics and every model's status,
one set per run, in ``models.model_parameters``, ``models.model_metrics`` and
``models.model_runs`` (the value and churn steps write it; the marts publish it)."""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.sqlrun import ensure_bookkeeping_tables


def record_model_outputs(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    parameters: pl.DataFrame | None = None,
    metrics: pl.DataFrame | None = None,
    runs: list[tuple[str, str, str | None]] = (),
) -> None:
    """Append one run's parameters, metrics and model statuses; rows a rerun of the same
    run_id wrote earlier for the same models are replaced."""
    ensure_bookkeeping_tables(con)
    for table, frame in (("model_parameters", parameters), ("model_metrics", metrics)):
        if frame is not None and frame.height:
            con.execute(
                f"delete from models.{table} where run_id = ? and list_contains(?, model)",
                [run_id, sorted(set(frame["model"]))],
            )
    if runs:
        con.execute(
            "delete from models.model_runs where run_id = ? and list_contains(?, model)",
            [run_id, sorted({r[0] for r in runs})],
        )
    if parameters is not None and parameters.height:
        con.register("_params", parameters.select("model", "parameter", "value", "std_error"))
        con.execute(
            "insert into models.model_parameters select $run_id, * from _params", {"run_id": run_id}
        )
        con.unregister("_params")
    if metrics is not None and metrics.height:
        con.register("_metrics", metrics.select("model", "metric", "value", "baseline"))
        con.execute(
            "insert into models.model_metrics select $run_id, * from _metrics", {"run_id": run_id}
        )
        con.unregister("_metrics")
    for model, status, message in runs:
        con.execute(
            "insert into models.model_runs values (?, ?, ?, ?)", [run_id, model, status, message]
        )
