"""The report's sections on the models: churn risk (bands, model quality against the
baselines, calibration, permutation importances) and the BG/NBD and Gamma-Gamma fit with
its holdout check.

Like :mod:`pipelines.publish.report_sections`, each builder returns the dict its template
block shows, charts included, or a one-sentence reason when its rows are absent.
"""

from __future__ import annotations

import re

import polars as pl

from models.clv.next_order import describe_next_order_verdict
from pipelines.publish.charts import (
    BAND_COLOURS,
    GREY,
    _chart_bars,
    _chart_calibration,
    _chart_churn_metrics,
    _chart_holdout,
    _chart_importances,
)
from pipelines.publish.formatting import _missing, label
from pipelines.publish.report_data import _load, _metric_cells, _ordered, _why

# Display order of the known churn bands (that of the value tiers and lifecycle stages is
# models.segments'); values not listed follow, largest first.
CHURN_BANDS = ("low", "medium", "high")
CHURN_METRICS = (
    "roc_auc",
    "pr_auc",
    "brier_score",
    "log_loss",
    "top_decile_lift",
    "top_decile_capture_rate",
)
# Metrics where a lower value is the better model.
LOWER_IS_BETTER = {"brier_score", "log_loss"}
TOP_IMPORTANCES = 10


def _churn_section(
    con, run_id, by_dimension, segments_reason, metrics, metrics_reason, runs
) -> dict:
    bands = _ordered(by_dimension.get("churn_band", []), CHURN_BANDS)
    cells = _metric_cells(metrics)
    quality = []
    for metric in CHURN_METRICS:
        vs_recency, vs_p_no_purchase = (
            cells.get(("churn_vs_recency", metric)),
            cells.get(("churn_vs_p_no_purchase", metric)),
        )
        alone = cells.get(("churn", metric))
        model_value = (vs_recency or vs_p_no_purchase or alone or {}).get("value")
        if model_value is None:
            continue
        row = {
            "metric": metric,
            "model": model_value,
            "recency": vs_recency["baseline"] if vs_recency else None,
            "p_no_purchase": vs_p_no_purchase["baseline"] if vs_p_no_purchase else None,
            "lower_is_better": metric in LOWER_IS_BETTER,
        }
        present = [
            v for v in (row["model"], row["recency"], row["p_no_purchase"]) if not _missing(v)
        ]
        row["best"] = (min if row["lower_is_better"] else max)(present)
        quality.append(row)
    test_set = {
        k: cells[("churn", k)]["value"]
        for k in ("n_customers", "churn_rate")
        if ("churn", k) in cells
    }
    charts = []
    if bands:
        charts.append(
            _chart_bars(
                "churn-bands",
                "Customers by churn band",
                [label(b["segment"]) for b in bands],
                [[b["customers"] for b in bands]],
                ["customers"],
                colours=[[BAND_COLOURS.get(b["segment"], GREY) for b in bands]],
                xlabel="customers",
                horizontal=False,
            )
        )
    if quality:
        charts.append(_chart_churn_metrics(quality))
    calibration = _calibration_points(metrics)
    if calibration:
        charts.append(_chart_calibration(calibration))
    importances, importances_reason = _load(
        con,
        "models.churn_importances",
        ("feature", "importance_mean", "importance_std"),
        run_id,
        order_by="importance_mean desc, feature",
    )
    importances = importances[:TOP_IMPORTANCES]
    if importances:
        charts.append(_chart_importances(importances))
    why_no_model = None
    if not quality:
        why_no_model = (
            "No churn model quality to show: "
            + (
                _why(runs, "churn")
                or metrics_reason
                or "marts.model_metrics has no churn rows for this run"
            )
            + "."
        )
    return {
        "bands": bands,
        "bands_reason": None
        if bands
        else "No churn bands to show: "
        + (segments_reason or "marts.segment_summary has no churn_band rows for this run")
        + ".",
        "quality": quality,
        "quality_reason": why_no_model,
        "published": runs.get("churn", {}).get("message"),
        "verdict": {
            k: cells[("churn_verdict", k)]["value"]
            for k in (
                "roc_auc_difference",
                "roc_auc_difference_ci_low",
                "roc_auc_difference_ci_high",
                "significant",
                "model_published",
            )
            if ("churn_verdict", k) in cells
        },
        "test_set": test_set,
        "importances": importances,
        "importances_reason": None
        if importances
        else (
            "No permutation importances to show: "
            + (
                (runs.get("churn", {}).get("status") != "fitted" and _why(runs, "churn"))
                or importances_reason
                or "the churn model was not fitted"
            )
            + "."
        ),
        "charts": charts,
    }


def _calibration_points(metrics: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Mean predicted vs observed churn per decile of each scorer's own probability."""
    pattern = re.compile(r"calibration_bin_(\d+)_(predicted|observed)")
    bins: dict[str, dict[int, dict[str, float]]] = {}
    for m in metrics:
        match = pattern.fullmatch(m["metric"])
        if not match or m["model"] not in ("churn_vs_recency", "churn_vs_p_no_purchase", "churn"):
            continue
        number, kind = int(match.group(1)), match.group(2)
        scorers = [("model", m["value"])]
        if m["model"] != "churn":
            scorers.append(
                (
                    "recency" if m["model"] == "churn_vs_recency" else "p_no_purchase",
                    m["baseline"],
                )
            )
        for scorer, value in scorers:
            if not _missing(value):
                bins.setdefault(scorer, {}).setdefault(number, {})[kind] = value
    points = {}
    for scorer in ("model", "recency", "p_no_purchase"):
        pairs = [
            (b["predicted"], b["observed"])
            for _, b in sorted(bins.get(scorer, {}).items())
            if "predicted" in b and "observed" in b
        ]
        if pairs:
            points[scorer] = pairs
    return points


def _next_order_verdict(metrics: list[dict]) -> list[str]:
    """The next-order verdict sentences (models.clv.describe_next_order_verdict)."""
    rows = [
        (m["model"], m["metric"], m["value"], m.get("baseline"))
        for m in metrics
        if m["model"] == "next_order_verdict"
    ]
    if not rows:
        return []
    frame = pl.DataFrame(
        rows,
        schema=["model", "metric", "value", "baseline"],
        orient="row",
        infer_schema_length=None,
    )
    return describe_next_order_verdict(frame)


#: The customer-base model candidates, simplest first (models.clv.candidates.CANDIDATES).
_CANDIDATES = ("bgnbd", "mbgnbd", "pareto_nbd")


def _bgnbd_section(parameters, parameters_reason, metrics, metrics_reason, runs) -> dict:
    # the published customer-base model is the candidate with parameters in this run
    # (only the chosen one is fitted on the whole history); BG/NBD when none is
    published = [p["model"] for p in parameters if p["model"] in _CANDIDATES]
    chosen = published[0] if published else "bgnbd"
    fitted = [p for p in parameters if p["model"] in (chosen, "gamma_gamma")]
    fitted.sort(key=lambda p: (p["model"] != chosen, p["parameter"] == "penalizer"))
    reason = None
    if not any(p["model"] == chosen for p in fitted):
        reason = (
            "No fitted BG/NBD parameters to show: "
            + (
                _why(runs, "bgnbd")
                or parameters_reason
                or "marts.model_parameters has no bgnbd rows for this run"
            )
            + "."
        )
    cells = _metric_cells(metrics)
    get = lambda model, metric: cells.get((model, metric), {})  # noqa: E731
    fit = {
        "customers": get(chosen, "customers").get("value"),
        "repeat_buyers": get("gamma_gamma", "repeat_buyers").get("value"),
    }
    holdout = None
    actual = get(chosen, "holdout_actual_repeat_purchases").get("value")
    if actual is not None:
        holdout = {
            "customers": get(chosen, "holdout_customers").get("value"),
            "actual": actual,
            "predicted": get(chosen, "holdout_predicted_repeat_purchases"),
            "mae": get(chosen, "holdout_mae_repeat_purchases"),
            "relative_error": get(chosen, "holdout_total_purchases_relative_error"),
            "window": (runs.get(f"{chosen}_holdout") or {}).get("message"),
        }
    # every candidate's holdout MAE, or why it has none
    candidates = [
        {
            "model": name,
            "mae": get(name, "holdout_mae_repeat_purchases").get("value"),
            "status": (runs.get(f"{name}_holdout") or {}).get("status"),
            "message": (runs.get(f"{name}_holdout") or {}).get("message"),
            "chosen": name == chosen,
        }
        for name in _CANDIDATES
        if f"{name}_holdout" in runs or get(name, "holdout_mae_repeat_purchases")
    ]
    message = (runs.get(chosen) or {}).get("message") or ""
    choice = message.split("; ", 1)[1] if "; " in message else None
    verdict = {
        k: get("clv_verdict", k).get("value")
        for k in (
            "mae_difference",
            "mae_difference_ci_low",
            "mae_difference_ci_high",
            "significant",
            "model_better",
        )
        if get("clv_verdict", k)
    }
    next_order = None
    if get("next_order_date", "mae_days"):
        next_order = {
            k: get("next_order_date", k)
            for k in ("mae_days", "harrell_c", "coverage", "customers_scored")
        }
    holdout_reason = None
    if holdout is None:
        holdout_reason = (
            "No holdout check to show: "
            + (
                _why(runs, f"{chosen}_holdout")
                or _why(runs, chosen)
                or metrics_reason
                or "the holdout check runs only when the BG/NBD model is fitted"
            )
            + "."
        )
    charts = [_chart_holdout(holdout)] if holdout else []
    return {
        "reason": reason,
        "model": chosen,
        "choice": choice,
        "candidates": candidates,
        "verdict": verdict,
        "parameters": fitted,
        "fit": fit,
        "holdout": holdout,
        "holdout_reason": holdout_reason,
        "next_order": next_order,
        "next_order_verdict": _next_order_verdict(metrics),
        "charts": charts,
    }
