"""The run's HTML report: one self-contained file that opens offline.

Reads one run's rows (``run_id``) of the published tables ``marts.data_quality``,
``marts.segment_summary``, ``marts.kpi_monthly``, ``marts.model_parameters`` and
``marts.model_metrics`` (contract: docs/marts.md; the ``is_fitted`` rows of model_metrics
say why a model was skipped), plus ``models.churn_importances``. A table or rows that are
absent make their section say why in one sentence; they are never an error.

The charts (inline matplotlib SVG) are drawn in :mod:`pipelines.publish.charts`; numbers and names
are written by :mod:`pipelines.publish.formatting`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from models.segments import LIFECYCLE_STAGES, VALUE_TIERS
from pipelines.publish.charts import (
    BAND_COLOURS,
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    SKY,
    VERMILION,
    _chart_bars,
    _chart_calibration,
    _chart_churn_metrics,
    _chart_file_rows,
    _chart_holdout,
    _chart_importances,
    _chart_monthly,
    _chart_panels,
    _chart_satisfaction,
)
from pipelines.publish.exports import empty_exports_reason
from pipelines.publish.formatting import (
    NONE_LABEL,
    _missing,
    format_count,
    format_money,
    format_pct,
    format_ratio,
    format_sig,
    label,
)

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "reports" / "templates"
TEMPLATE_NAME = "report.html.j2"

# Display order of the known segment values (value tiers and lifecycle stages:
# models.segments); values not listed follow, largest first.
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
FILE_MEASURES = ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate")
TOP_IMPORTANCES = 10
KPI_TABLE_MONTHS = 12

# segment_summary's segment for customers without a value in a dimension (prospects).
UNASSIGNED = "unassigned"


# --------------------------------------------------------------------------- entry point


def write_report(
    con: duckdb.DuckDBPyConnection,
    out_path: Path,
    *,
    run_id: str,
    as_of: date,
    currency: str | None = None,
) -> Path:
    """Write the run's report to ``out_path`` as one self-contained HTML file.

    Parameters
    ----------
    con : DuckDB connection to the working database, after the marts step.
    out_path : the file to write, usually ``reports/<as_of>/report.html``; its directory
        is created. The file is written to a temporary file beside it and moved into place,
        so a reader never sees half a report and a failure leaves the last one.
    run_id, as_of : the run whose rows are reported, and its observation date.
    currency : ISO code of the base currency amounts are in (``currency.base``), for labels.

    Returns
    -------
    The path written.
    """
    context = collect_report_context(con, run_id=run_id, as_of=as_of, currency=currency)
    return _write_atomically(Path(out_path), render_report(context), run_id)


def render_report(context: dict[str, Any]) -> str:
    """The HTML text of the report for a context from :func:`collect_report_context`."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        count=format_count,
        money=format_money,
        ratio=format_ratio,
        pct=format_pct,
        sig=format_sig,
        label=label,
    )
    return env.get_template(TEMPLATE_NAME).render(**context)


def collect_report_context(
    con: duckdb.DuckDBPyConnection, *, run_id: str, as_of: date, currency: str | None = None
) -> dict[str, Any]:
    """Everything the template shows, read from the warehouse; charts rendered to SVG."""
    segments, segments_reason = _load(
        con,
        "marts.segment_summary",
        (
            "dimension",
            "segment",
            "customers",
            "share_of_customers",
            "consenting_customers",
            "revenue_total",
            "net_revenue",
            "average_predicted_clv",
            "total_predicted_clv",
            "average_churn_probability",
        ),
        run_id,
    )
    by_dimension: dict[str, list[dict]] = {}
    for row in segments:
        by_dimension.setdefault(row["dimension"], []).append(row)
    metrics, metrics_reason = _load(
        con,
        "marts.model_metrics",
        ("model", "metric", "value", "baseline"),
        run_id,
        optional=("message",),
    )
    runs = _model_runs(metrics)
    parameters, parameters_reason = _load(
        con, "marts.model_parameters", ("model", "parameter", "value", "std_error"), run_id
    )
    money_unit = f" ({currency})" if currency else ""
    return {
        "run_id": run_id,
        "as_of": as_of,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "currency": currency,
        "money_unit": money_unit,
        "run": _run_header(con, run_id),
        "headline": _headline(by_dimension),
        "exports_reason": _exports_reason(con),
        "data_quality": _data_quality_section(con, run_id),
        "segments": _rfm_section(by_dimension, segments_reason, money_unit),
        "clv": _clv_section(by_dimension, segments_reason, runs, money_unit),
        "churn": _churn_section(
            con, run_id, by_dimension, segments_reason, metrics, metrics_reason, runs
        ),
        "kpis": _kpi_section(con, run_id, as_of, money_unit),
        "bgnbd": _bgnbd_section(parameters, parameters_reason, metrics, metrics_reason, runs),
        "lifecycle": _lifecycle_section(by_dimension, segments_reason),
    }


# --------------------------------------------------------------------------- reading


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    return (
        con.execute(
            "select count(*) from information_schema.tables where table_catalog = current_database() "
            "and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()[0][0]
        > 0
    )


def _records(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> list[dict]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _table_columns(con: duckdb.DuckDBPyConnection, qualified: str) -> set[str]:
    schema, table = qualified.split(".")
    return {
        row[0]
        for row in con.execute(
            "select column_name from information_schema.columns where table_catalog = "
            "current_database() and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    }


def _load(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str],
    run_id: str,
    order_by: str | None = None,
    optional: Sequence[str] = (),
) -> tuple[list[dict], str | None]:
    """One run's rows of ``table`` (a fixed, schema-qualified name), or no rows and why.
    ``optional`` columns read as NULL when the table lacks them (an older warehouse)."""
    if not _table_exists(con, table):
        return [], f"{table} is not in the warehouse (the step that builds it did not run)"
    present = _table_columns(con, table)
    selected = list(columns) + [c if c in present else f"null as {c}" for c in optional]
    sql = f"select {', '.join(selected)} from {table} where run_id = $run_id"
    if order_by:
        sql += f" order by {order_by}"
    try:
        rows = _records(con, sql, {"run_id": run_id})
    except duckdb.Error as exc:
        log.warning("report: cannot read %s: %s", table, exc)
        return [], f"{table} could not be read ({str(exc).splitlines()[0]})"
    if not rows:
        return [], f"{table} has no rows for run {run_id}"
    return rows, None


def _model_runs(metrics: list[dict]) -> dict[str, dict]:
    """Status and message per model the run tried, from the ``is_fitted`` rows of
    marts.model_metrics (message ``<status>: <reason>``, e.g. ``skipped: 3 repeat buyers``)."""
    runs = {}
    for m in metrics:
        if m["metric"] == "is_fitted":
            status, _, message = (m.get("message") or "").partition(": ")
            runs[m["model"]] = {
                "status": status or ("fitted" if m["value"] else "not fitted"),
                "message": message or None,
            }
    return runs


def _run_header(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows, _ = _load(con, "audit.runs", ("started_at",), run_id)
    return rows[0] if rows else {"started_at": None}


def _ordered(rows: list[dict], order: Sequence[str] = ()) -> list[dict]:
    """Known values in ``order`` first, then the rest by customers (largest first), then
    the customers without a value."""
    rank = {value: i for i, value in enumerate(order)}
    return sorted(
        rows,
        key=lambda r: (
            r["segment"] in (None, UNASSIGNED),
            rank.get(r["segment"], len(rank)),
            -(r["customers"] or 0),
            str(r["segment"]),
        ),
    )


def _metric_cells(metrics: list[dict]) -> dict[tuple[str, str], dict]:
    return {(m["model"], m["metric"]): m for m in metrics}


def _why(runs: dict[str, dict], model: str) -> str | None:
    run = runs.get(model)
    if run is None or not run.get("message"):
        return None
    return f"{label(model)} {run['status']}: {run['message'].rstrip('.')}"


# --------------------------------------------------------------------------- sections


def _headline(by_dimension: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """Key figures for the top of the page (customers, consent, revenue, predicted CLV)."""
    rows = by_dimension.get("value_tier") or by_dimension.get("lifecycle_stage")
    if not rows:
        return []
    total = lambda column: sum(r[column] for r in rows if not _missing(r[column]))  # noqa: E731
    figures = [
        ("customers", format_count(total("customers"))),
        ("consenting customers", format_count(total("consenting_customers"))),
        ("revenue total", format_money(total("revenue_total"))),
    ]
    if any(not _missing(r["total_predicted_clv"]) for r in rows):
        figures.append(("total predicted CLV", format_money(total("total_predicted_clv"))))
    return figures


def _exports_reason(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why the marketing lists are empty, or None (also when there is no customer_360)."""
    try:
        return empty_exports_reason(con)
    except duckdb.CatalogException:
        return None


def _data_quality_section(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows, reason = _load(
        con,
        "marts.data_quality",
        ("source", "file_name", "measure", "rule", "rows"),
        run_id,
        optional=("file_sha256",),
    )
    if reason:
        return {"reason": f"No data-quality counts to show: {reason}."}
    files: dict[tuple, dict] = {}
    by_rule: dict[tuple, int] = {}
    blanked: dict[tuple, int] = {}
    customers: dict[str, int] = {}
    for r in rows:
        n = r["rows"] or 0
        if r["measure"] in FILE_MEASURES:
            key = (r["source"], r["file_name"] or NONE_LABEL, r["file_sha256"] or "")
            counts = files.setdefault(key, dict.fromkeys(FILE_MEASURES, 0))
            counts[r["measure"]] += n
        elif r["measure"] == "quarantined_by_rule":
            key = (r["source"], r["rule"] or NONE_LABEL)
            by_rule[key] = by_rule.get(key, 0) + n
        elif r["measure"] == "field_blanked_by_rule":
            key = (r["source"], r["rule"] or NONE_LABEL)
            blanked[key] = blanked.get(key, 0) + n
        elif r["measure"] in ("customers_unified", "source_customer_ids", "customers"):
            customers[r["measure"]] = customers.get(r["measure"], 0) + n
    file_rows = [
        {
            "source": s,
            "file_name": f,
            "file_sha256": sha,
            **c,
            "is_balanced": c["rows_read"]
            == c["rows_loaded"] + c["rows_quarantined"] + c["rows_duplicate"],
        }
        for (s, f, sha), c in sorted(files.items())
    ]
    # Two deliveries with one name are told apart by their checksum.
    names = [(f["source"], f["file_name"]) for f in file_rows]
    for f in file_rows:
        f["label"] = f"{f['source']}: {f['file_name']}" + (
            f" ({f['file_sha256'][:8]})"
            if names.count((f["source"], f["file_name"])) > 1 and f["file_sha256"]
            else ""
        )
    totals = {m: sum(f[m] for f in file_rows) for m in FILE_MEASURES}
    rules = [
        {"source": s, "rule": r, "rows": n}
        for (s, r), n in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    fields = [
        {"source": s, "rule": r, "rows": n}
        for (s, r), n in sorted(blanked.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    charts = []
    if file_rows:
        charts.append(_chart_file_rows(file_rows))
    if rules:
        charts.append(
            _chart_bars(
                "quarantine-rules",
                "Quarantined rows by rule",
                [f"{r['source']}: {r['rule']}" for r in rules],
                [[r["rows"] for r in rules]],
                ["rows quarantined"],
                colours=[VERMILION],
                xlabel="rows quarantined",
            )
        )
    return {
        "reason": None,
        "files": file_rows,
        "totals": totals,
        "rules": rules,
        "fields": fields,
        "customers": customers,
        "charts": charts,
    }


def _rfm_section(by_dimension, segments_reason, money_unit) -> dict:
    rows = _ordered(by_dimension.get("rfm_segment", []))
    if not rows:
        return {
            "reason": "No RFM segments to show: "
            + (segments_reason or "marts.segment_summary has no rfm_segment rows for this run")
            + "."
        }
    names = [label(r["segment"]) for r in rows]
    chart = _chart_panels(
        "rfm-segments",
        "Customers and revenue total by RFM segment",
        names,
        [
            ("customers", [r["customers"] for r in rows], BLUE, format_count),
            (
                f"revenue total{money_unit}",
                [r["revenue_total"] for r in rows],
                ORANGE,
                format_money,
            ),
        ],
    )
    return {"reason": None, "rows": rows, "charts": [chart]}


def _clv_section(by_dimension, segments_reason, runs, money_unit) -> dict:
    rows = _ordered(by_dimension.get("value_tier", []), VALUE_TIERS)
    if not rows:
        return {
            "reason": "No value tiers to show: "
            + (segments_reason or "marts.segment_summary has no value_tier rows for this run")
            + "."
        }
    has_clv = any(not _missing(r["total_predicted_clv"]) for r in rows)
    clv_reason = None
    if not has_clv:
        clv_reason = (
            "Predicted CLV is empty in this run, so tiers rank customers by revenue: "
            + (_why(runs, "bgnbd") or _why(runs, "gamma_gamma") or "the CLV models were not fitted")
            + "."
        )
    names = [label(r["segment"]) for r in rows]
    panels = [
        ("customers", [r["customers"] for r in rows], BLUE, format_count),
        (f"revenue total{money_unit}", [r["revenue_total"] for r in rows], ORANGE, format_money),
    ]
    if has_clv:
        panels.append(
            (
                f"total predicted CLV{money_unit}",
                [r["total_predicted_clv"] for r in rows],
                GREEN,
                format_money,
            )
        )
    chart = _chart_panels(
        "clv-tiers", "Customers, revenue total and predicted CLV by value tier", names, panels
    )
    return {
        "reason": None,
        "rows": rows,
        "has_clv": has_clv,
        "clv_reason": clv_reason,
        "charts": [chart],
    }


def _churn_section(
    con, run_id, by_dimension, segments_reason, metrics, metrics_reason, runs
) -> dict:
    bands = _ordered(by_dimension.get("churn_band", []), CHURN_BANDS)
    cells = _metric_cells(metrics)
    quality = []
    for metric in CHURN_METRICS:
        vs_recency, vs_bgnbd = (
            cells.get(("churn_vs_recency", metric)),
            cells.get(("churn_vs_bgnbd", metric)),
        )
        alone = cells.get(("churn", metric))
        model_value = (vs_recency or vs_bgnbd or alone or {}).get("value")
        if model_value is None:
            continue
        row = {
            "metric": metric,
            "model": model_value,
            "recency": vs_recency["baseline"] if vs_recency else None,
            "bgnbd": vs_bgnbd["baseline"] if vs_bgnbd else None,
            "lower_is_better": metric in LOWER_IS_BETTER,
        }
        present = [v for v in (row["model"], row["recency"], row["bgnbd"]) if not _missing(v)]
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
        if not match or m["model"] not in ("churn_vs_recency", "churn_vs_bgnbd", "churn"):
            continue
        number, kind = int(match.group(1)), match.group(2)
        scorers = [("model", m["value"])]
        if m["model"] != "churn":
            scorers.append(
                ("recency" if m["model"] == "churn_vs_recency" else "bgnbd", m["baseline"])
            )
        for scorer, value in scorers:
            if not _missing(value):
                bins.setdefault(scorer, {}).setdefault(number, {})[kind] = value
    points = {}
    for scorer in ("model", "recency", "bgnbd"):
        pairs = [
            (b["predicted"], b["observed"])
            for _, b in sorted(bins.get(scorer, {}).items())
            if "predicted" in b and "observed" in b
        ]
        if pairs:
            points[scorer] = pairs
    return points


def _kpi_section(con, run_id, as_of, money_unit) -> dict:
    """Definitions in docs/kpis.md: rates and CSAT are shares 0-1, NPS is -100..100."""
    rows, reason = _load(
        con,
        "marts.kpi_monthly",
        (
            "month",
            "active_customers",
            "new_customers",
            "returning_customers",
            "repeat_purchase_rate",
            "retention_rate",
            "churn_rate",
            "orders",
            "revenue",
            "average_order_value",
            "average_predicted_clv",
            "nps",
            "csat",
            "complaint_rate",
            "median_first_response_hours",
        ),
        run_id,
        order_by="month",
        optional=("is_partial_month",),
    )
    if reason:
        return {"reason": f"No KPI trends to show: {reason}."}
    months = [r["month"] for r in rows]
    partial = [bool(r["is_partial_month"]) for r in rows]
    series = lambda column: [r[column] for r in rows]  # noqa: E731
    has = lambda column: any(not _missing(v) for v in series(column))  # noqa: E731
    charts = [
        _chart_monthly(
            "kpi-revenue",
            f"Revenue by month{money_unit}",
            months,
            partial,
            [("revenue", series("revenue"), BLUE)],
            bars=True,
        ),
        _chart_monthly(
            "kpi-customers",
            "Active and new customers by month",
            months,
            partial,
            [
                ("active customers", series("active_customers"), BLUE),
                ("new customers", series("new_customers"), ORANGE),
            ],
        ),
    ]
    rates_reason = None
    if has("retention_rate") or has("churn_rate"):
        charts.append(
            _chart_monthly(
                "kpi-rates",
                "Retention rate and churn rate by month",
                months,
                partial,
                [
                    ("retention rate", series("retention_rate"), GREEN),
                    ("churn rate", series("churn_rate"), VERMILION),
                ],
                percent=True,
            )
        )
    else:
        rates_reason = (
            "Retention rate and churn rate are empty: they compare a month's "
            "buyers with the previous month's, and no month has a previous month "
            "with active customers yet."
        )
    has_nps, has_csat = has("nps"), has("csat")
    if has_nps or has_csat:
        charts.append(
            _chart_satisfaction(
                months,
                partial,
                series("nps") if has_nps else None,
                series("csat") if has_csat else None,
            )
        )
    satisfaction_reason = None
    if not (has_nps and has_csat):
        missing = " and ".join(n for n, has in (("NPS", has_nps), ("CSAT", has_csat)) if not has)
        satisfaction_reason = (
            f"{missing} {'are' if ' and ' in missing else 'is'} empty: no "
            "survey responses with that score in the events (or no events "
            "source)."
        )
    partial_months = [m for m, p in zip(months, partial) if p]
    return {
        "reason": None,
        "rows": rows[-KPI_TABLE_MONTHS:],
        "months": len(rows),
        "first_month": months[0],
        "last_month": months[-1],
        "charts": charts,
        "satisfaction_reason": satisfaction_reason,
        "rates_reason": rates_reason,
        "partial_month": partial_months[-1] if partial_months else None,
    }


def _bgnbd_section(parameters, parameters_reason, metrics, metrics_reason, runs) -> dict:
    fitted = [p for p in parameters if p["model"] in ("bgnbd", "gamma_gamma")]
    fitted.sort(key=lambda p: (p["model"] != "bgnbd", p["parameter"] == "penalizer"))
    reason = None
    if not any(p["model"] == "bgnbd" for p in fitted):
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
        "customers": get("bgnbd", "customers").get("value"),
        "repeat_buyers": get("gamma_gamma", "repeat_buyers").get("value"),
    }
    holdout = None
    actual = get("bgnbd", "holdout_actual_repeat_purchases").get("value")
    if actual is not None:
        holdout = {
            "customers": get("bgnbd", "holdout_customers").get("value"),
            "actual": actual,
            "predicted": get("bgnbd", "holdout_predicted_repeat_purchases"),
            "mae": get("bgnbd", "holdout_mae_repeat_purchases"),
            "relative_error": get("bgnbd", "holdout_total_purchases_relative_error"),
            "window": (runs.get("bgnbd_holdout") or {}).get("message"),
        }
    next_order = None
    if get("next_order_date", "mae_days"):
        next_order = {
            k: get("next_order_date", k) for k in ("mae_days", "coverage", "customers_scored")
        }
    holdout_reason = None
    if holdout is None:
        holdout_reason = (
            "No holdout check to show: "
            + (
                _why(runs, "bgnbd_holdout")
                or _why(runs, "bgnbd")
                or metrics_reason
                or "the holdout check runs only when the BG/NBD model is fitted"
            )
            + "."
        )
    charts = [_chart_holdout(holdout)] if holdout else []
    return {
        "reason": reason,
        "parameters": fitted,
        "fit": fit,
        "holdout": holdout,
        "holdout_reason": holdout_reason,
        "next_order": next_order,
        "charts": charts,
    }


def _lifecycle_section(by_dimension, segments_reason) -> dict:
    stages = _ordered(by_dimension.get("lifecycle_stage", []), LIFECYCLE_STAGES)
    actions = _ordered(by_dimension.get("recommended_action", []))
    charts = []
    for key, title, rows in (
        ("lifecycle-stages", "Customers by lifecycle stage", stages),
        ("recommended-actions", "Customers by recommended action", actions),
    ):
        if rows:
            charts.append(
                _chart_bars(
                    key,
                    title,
                    [label(r["segment"]) for r in rows],
                    [[r["customers"] for r in rows], [r["consenting_customers"] for r in rows]],
                    ["customers", "consenting customers"],
                    colours=[BLUE, SKY],
                    xlabel="customers",
                )
            )
    reason = None
    if not stages and not actions:
        reason = (
            "No lifecycle stages or recommended actions to show: "
            + (
                segments_reason
                or "marts.segment_summary has no lifecycle_stage or "
                "recommended_action rows for this run"
            )
            + "."
        )
    return {"reason": reason, "stages": stages, "actions": actions, "charts": charts}


# --------------------------------------------------------------------------- writing


def _write_atomically(path: Path, text: str, run_id: str) -> Path:
    """Write beside ``path`` under publish's temporary name, then swap it in with
    :func:`pipelines.publish.serving.publish_file_atomically` (readers see the old report or the
    new one, never a part; a failure leaves the old one). Leftovers of a crashed run are
    removed first."""
    from pipelines.publish import serving as publish

    temporary = publish.temp_path_for(path, run_id)
    publish.remove_stale_temp_files(path)
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        if not path.exists():
            os.chmod(temporary, 0o644)  # a report is meant to be shared; no personal data
        return publish.publish_file_atomically(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
