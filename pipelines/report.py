"""The run's HTML report: one self-contained file that opens offline.

Reads one run's rows (``run_id``) of the published tables ``marts.data_quality``,
``marts.segment_summary``, ``marts.kpi_monthly``, ``marts.model_parameters`` and
``marts.model_metrics`` (contract: docs/marts.md; the ``is_fitted`` rows of model_metrics
say why a model was skipped), plus ``models.churn_importances``. A table or rows that are
absent make their section say why in one sentence; they are never an error.

Charts are matplotlib figures drawn by its SVG backend and inlined in the page. Matplotlib
is already pinned for the project and gets axes, ticks, dates and error bars right; its
vector output needs no script, no font file and no network, prints sharply and scales.
Text stays text (``svg.fonttype = 'none'``): the SVG stays small and searchable and the
browser draws it with the page's local fonts. Each SVG is rewritten for inlining (no XML
prolog, no namespace URLs, ids prefixed with the chart's key so several charts share one
page) and every data mark (a bar, a line) carries the id ``<key>-mark-<n>``, so a test
can count what the browser drew.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import matplotlib
from markupsafe import Markup, escape
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from pipelines.exports import empty_exports_reason

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "reports" / "templates"
TEMPLATE_NAME = "report.html.j2"

# Display order of the known segment values; values not listed follow, largest first.
VALUE_TIERS = ("strategic", "key", "general", "potential")
LIFECYCLE_STAGES = ("prospect", "new", "active", "at_risk", "lapsed", "reactivated")
CHURN_BANDS = ("low", "medium", "high")
CHURN_METRICS = ("roc_auc", "pr_auc", "brier_score", "log_loss", "top_decile_lift",
                 "top_decile_capture_rate")
# Metrics where a lower value is the better model.
LOWER_IS_BETTER = {"brier_score", "log_loss"}
FILE_MEASURES = ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate")
TOP_IMPORTANCES = 10
KPI_TABLE_MONTHS = 12

# How names are shown: the column name with spaces, these words and names spelled out.
_WORDS = {"clv": "CLV", "rfm": "RFM", "nps": "NPS", "csat": "CSAT", "roc": "ROC", "auc": "AUC",
          "pr": "PR", "mae": "MAE", "bgnbd": "BG/NBD", "id": "ID", "ids": "IDs"}
_NAMES = {"p_alive": "p_alive", "bgnbd": "BG/NBD", "gamma_gamma": "Gamma-Gamma",
          "top_decile_lift": "top-decile lift",
          "top_decile_capture_rate": "top-decile capture rate",
          "brier_score": "Brier score", "T": "T",
          "next_order_date": "expected next order date"}
NONE_LABEL = "(none)"
# segment_summary's segment for customers without a value in a dimension (prospects).
UNASSIGNED = "unassigned"

# Okabe & Ito's colour-blind-safe palette.
BLUE, ORANGE, GREEN, VERMILION, SKY, PURPLE, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#8C8C8C")
BAND_COLOURS = {"low": GREEN, "medium": ORANGE, "high": VERMILION}
SCORER_COLOURS = {"model": BLUE, "recency": ORANGE, "bgnbd": GREEN}

_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.dpi": 72,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


# --------------------------------------------------------------------------- entry point


def write_report(con: duckdb.DuckDBPyConnection, out_path: Path, *, run_id: str, as_of: date,
                 currency: str | None = None) -> Path:
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
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(count=format_count, money=format_money, ratio=format_ratio,
                       pct=format_pct, sig=format_sig, label=label)
    return env.get_template(TEMPLATE_NAME).render(**context)


def collect_report_context(con: duckdb.DuckDBPyConnection, *, run_id: str, as_of: date,
                           currency: str | None = None) -> dict[str, Any]:
    """Everything the template shows, read from the warehouse; charts rendered to SVG."""
    segments, segments_reason = _load(con, "marts.segment_summary", (
        "dimension", "segment", "customers", "share_of_customers", "consenting_customers",
        "revenue_total", "net_revenue", "average_predicted_clv", "total_predicted_clv",
        "average_churn_probability"), run_id)
    by_dimension: dict[str, list[dict]] = {}
    for row in segments:
        by_dimension.setdefault(row["dimension"], []).append(row)
    metrics, metrics_reason = _load(con, "marts.model_metrics",
                                    ("model", "metric", "value", "baseline"), run_id,
                                    optional=("message",))
    runs = _model_runs(metrics)
    parameters, parameters_reason = _load(con, "marts.model_parameters",
                                          ("model", "parameter", "value", "std_error"), run_id)
    money_unit = f" ({currency})" if currency else ""
    return {
        "run_id": run_id,
        "as_of": as_of,
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "currency": currency,
        "money_unit": money_unit,
        "run": _run_header(con, run_id),
        "headline": _headline(by_dimension),
        "exports_reason": _exports_reason(con),
        "data_quality": _data_quality_section(con, run_id),
        "segments": _rfm_section(by_dimension, segments_reason, money_unit),
        "clv": _clv_section(by_dimension, segments_reason, runs, money_unit),
        "churn": _churn_section(con, run_id, by_dimension, segments_reason, metrics,
                                metrics_reason, runs),
        "kpis": _kpi_section(con, run_id, as_of, money_unit),
        "bgnbd": _bgnbd_section(parameters, parameters_reason, metrics, metrics_reason, runs),
        "lifecycle": _lifecycle_section(by_dimension, segments_reason),
    }


# --------------------------------------------------------------------------- formatting


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_count(value) -> str:
    """Whole numbers with thousands separators: 3,000."""
    return "–" if _missing(value) else f"{round(value):,}"


def format_money(value, digits: int = 0) -> str:
    """Amounts with thousands separators: 411,827 (digits=0) or 34.35 (digits=2)."""
    return "–" if _missing(value) else f"{value:,.{digits}f}"


def format_ratio(value, digits: int = 3) -> str:
    """Model metrics: 0.901."""
    return "–" if _missing(value) else f"{value:.{digits}f}"


def format_pct(value, digits: int = 1) -> str:
    """A share 0–1 as a percentage: 0.81 -> 81.0%."""
    return "–" if _missing(value) else f"{100 * value:.{digits}f}%"


def format_sig(value, digits: int = 4) -> str:
    """Fitted parameters to four significant digits: 0.8226, 49.97."""
    return "–" if _missing(value) else f"{value:.{digits}g}"


def label(name) -> str:
    """A column or segment name as text: 'predicted_clv' -> 'predicted CLV'."""
    if name is None:
        return NONE_LABEL
    name = str(name)
    if name in _NAMES:
        return _NAMES[name]
    return " ".join(_WORDS.get(word, word) for word in name.split("_"))


# --------------------------------------------------------------------------- reading


def _table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, table = qualified.split(".")
    return con.execute(
        "select count(*) from information_schema.tables where table_catalog = current_database() "
        "and table_schema = ? and table_name = ?", [schema, table]).fetchall()[0][0] > 0


def _records(con: duckdb.DuckDBPyConnection, sql: str, params=None) -> list[dict]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _table_columns(con: duckdb.DuckDBPyConnection, qualified: str) -> set[str]:
    schema, table = qualified.split(".")
    return {row[0] for row in con.execute(
        "select column_name from information_schema.columns where table_catalog = "
        "current_database() and table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()}


def _load(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], run_id: str,
          order_by: str | None = None, optional: Sequence[str] = ()
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
            runs[m["model"]] = {"status": status or ("fitted" if m["value"] else "not fitted"),
                                "message": message or None}
    return runs


def _run_header(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows, _ = _load(con, "audit.runs", ("started_at",), run_id)
    return rows[0] if rows else {"started_at": None}


def _ordered(rows: list[dict], order: Sequence[str] = ()) -> list[dict]:
    """Known values in ``order`` first, then the rest by customers (largest first), then
    the customers without a value."""
    rank = {value: i for i, value in enumerate(order)}
    return sorted(rows, key=lambda r: (r["segment"] in (None, UNASSIGNED),
                                       rank.get(r["segment"], len(rank)),
                                       -(r["customers"] or 0), str(r["segment"])))


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
    figures = [("customers", format_count(total("customers"))),
               ("consenting customers", format_count(total("consenting_customers"))),
               ("revenue total", format_money(total("revenue_total")))]
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
    rows, reason = _load(con, "marts.data_quality", ("source", "file_name", "measure", "rule",
                                                     "rows"), run_id, optional=("file_sha256",))
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
    file_rows = [{"source": s, "file_name": f, "file_sha256": sha, **c,
                  "is_balanced": c["rows_read"] == c["rows_loaded"] + c["rows_quarantined"]
                  + c["rows_duplicate"]} for (s, f, sha), c in sorted(files.items())]
    # Two deliveries with one name are told apart by their checksum.
    names = [(f["source"], f["file_name"]) for f in file_rows]
    for f in file_rows:
        f["label"] = f"{f['source']}: {f['file_name']}" + (
            f" ({f['file_sha256'][:8]})" if names.count((f["source"], f["file_name"])) > 1
            and f["file_sha256"] else "")
    totals = {m: sum(f[m] for f in file_rows) for m in FILE_MEASURES}
    rules = [{"source": s, "rule": r, "rows": n}
             for (s, r), n in sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))]
    fields = [{"source": s, "rule": r, "rows": n}
              for (s, r), n in sorted(blanked.items(), key=lambda kv: (-kv[1], kv[0]))]
    charts = []
    if file_rows:
        charts.append(_chart_file_rows(file_rows))
    if rules:
        charts.append(_chart_bars("quarantine-rules", "Quarantined rows by rule",
                                  [f"{r['source']}: {r['rule']}" for r in rules],
                                  [[r["rows"] for r in rules]], ["rows quarantined"],
                                  colours=[VERMILION], xlabel="rows quarantined"))
    return {"reason": None, "files": file_rows, "totals": totals, "rules": rules,
            "fields": fields, "customers": customers, "charts": charts}


def _rfm_section(by_dimension, segments_reason, money_unit) -> dict:
    rows = _ordered(by_dimension.get("rfm_segment", []))
    if not rows:
        return {"reason": "No RFM segments to show: " + (
            segments_reason or "marts.segment_summary has no rfm_segment rows for this run") + "."}
    names = [label(r["segment"]) for r in rows]
    chart = _chart_panels("rfm-segments", "Customers and revenue total by RFM segment", names, [
        ("customers", [r["customers"] for r in rows], BLUE, format_count),
        (f"revenue total{money_unit}", [r["revenue_total"] for r in rows], ORANGE, format_money),
    ])
    return {"reason": None, "rows": rows, "charts": [chart]}


def _clv_section(by_dimension, segments_reason, runs, money_unit) -> dict:
    rows = _ordered(by_dimension.get("value_tier", []), VALUE_TIERS)
    if not rows:
        return {"reason": "No value tiers to show: " + (
            segments_reason or "marts.segment_summary has no value_tier rows for this run") + "."}
    has_clv = any(not _missing(r["total_predicted_clv"]) for r in rows)
    clv_reason = None
    if not has_clv:
        clv_reason = ("Predicted CLV is empty in this run, so tiers rank customers by revenue: "
                      + (_why(runs, "bgnbd") or _why(runs, "gamma_gamma")
                         or "the CLV models were not fitted") + ".")
    names = [label(r["segment"]) for r in rows]
    panels = [("customers", [r["customers"] for r in rows], BLUE, format_count),
              (f"revenue total{money_unit}", [r["revenue_total"] for r in rows], ORANGE,
               format_money)]
    if has_clv:
        panels.append((f"total predicted CLV{money_unit}",
                       [r["total_predicted_clv"] for r in rows], GREEN, format_money))
    chart = _chart_panels("clv-tiers", "Customers, revenue total and predicted CLV by value tier",
                          names, panels)
    return {"reason": None, "rows": rows, "has_clv": has_clv, "clv_reason": clv_reason,
            "charts": [chart]}


def _churn_section(con, run_id, by_dimension, segments_reason, metrics, metrics_reason,
                   runs) -> dict:
    bands = _ordered(by_dimension.get("churn_band", []), CHURN_BANDS)
    cells = _metric_cells(metrics)
    quality = []
    for metric in CHURN_METRICS:
        vs_recency, vs_bgnbd = cells.get(("churn_vs_recency", metric)), cells.get(
            ("churn_vs_bgnbd", metric))
        alone = cells.get(("churn", metric))
        model_value = (vs_recency or vs_bgnbd or alone or {}).get("value")
        if model_value is None:
            continue
        row = {"metric": metric, "model": model_value,
               "recency": vs_recency["baseline"] if vs_recency else None,
               "bgnbd": vs_bgnbd["baseline"] if vs_bgnbd else None,
               "lower_is_better": metric in LOWER_IS_BETTER}
        present = [v for v in (row["model"], row["recency"], row["bgnbd"]) if not _missing(v)]
        row["best"] = (min if row["lower_is_better"] else max)(present)
        quality.append(row)
    test_set = {k: cells[("churn", k)]["value"] for k in ("n_customers", "churn_rate")
                if ("churn", k) in cells}
    charts = []
    if bands:
        charts.append(_chart_bars("churn-bands", "Customers by churn band",
                                  [label(b["segment"]) for b in bands],
                                  [[b["customers"] for b in bands]], ["customers"],
                                  colours=[[BAND_COLOURS.get(b["segment"], GREY) for b in bands]],
                                  xlabel="customers", horizontal=False))
    if quality:
        charts.append(_chart_churn_metrics(quality))
    calibration = _calibration_points(metrics)
    if calibration:
        charts.append(_chart_calibration(calibration))
    importances, importances_reason = _load(
        con, "models.churn_importances", ("feature", "importance_mean", "importance_std"),
        run_id, order_by="importance_mean desc, feature")
    importances = importances[:TOP_IMPORTANCES]
    if importances:
        charts.append(_chart_importances(importances))
    why_no_model = None
    if not quality:
        why_no_model = "No churn model quality to show: " + (
            _why(runs, "churn") or metrics_reason
            or "marts.model_metrics has no churn rows for this run") + "."
    return {
        "bands": bands,
        "bands_reason": None if bands else "No churn bands to show: " + (
            segments_reason or "marts.segment_summary has no churn_band rows for this run") + ".",
        "quality": quality,
        "quality_reason": why_no_model,
        "published": runs.get("churn", {}).get("message"),
        "test_set": test_set,
        "importances": importances,
        "importances_reason": None if importances else (
            "No permutation importances to show: "
            + ((runs.get("churn", {}).get("status") != "fitted" and _why(runs, "churn"))
               or importances_reason or "the churn model was not fitted") + "."),
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
            scorers.append(("recency" if m["model"] == "churn_vs_recency" else "bgnbd",
                            m["baseline"]))
        for scorer, value in scorers:
            if not _missing(value):
                bins.setdefault(scorer, {}).setdefault(number, {})[kind] = value
    points = {}
    for scorer in ("model", "recency", "bgnbd"):
        pairs = [(b["predicted"], b["observed"]) for _, b in sorted(bins.get(scorer, {}).items())
                 if "predicted" in b and "observed" in b]
        if pairs:
            points[scorer] = pairs
    return points


def _kpi_section(con, run_id, as_of, money_unit) -> dict:
    """Definitions in docs/kpis.md: rates and CSAT are shares 0-1, NPS is -100..100."""
    rows, reason = _load(con, "marts.kpi_monthly", (
        "month", "active_customers", "new_customers", "returning_customers",
        "repeat_purchase_rate", "retention_rate", "churn_rate", "orders", "revenue",
        "average_order_value", "average_predicted_clv", "nps", "csat", "complaint_rate",
        "median_first_response_hours"), run_id, order_by="month",
        optional=("is_partial_month",))
    if reason:
        return {"reason": f"No KPI trends to show: {reason}."}
    months = [r["month"] for r in rows]
    partial = [bool(r["is_partial_month"]) for r in rows]
    series = lambda column: [r[column] for r in rows]  # noqa: E731
    has = lambda column: any(not _missing(v) for v in series(column))  # noqa: E731
    charts = [
        _chart_monthly("kpi-revenue", f"Revenue by month{money_unit}", months, partial,
                       [("revenue", series("revenue"), BLUE)], bars=True),
        _chart_monthly("kpi-customers", "Active and new customers by month", months, partial,
                       [("active customers", series("active_customers"), BLUE),
                        ("new customers", series("new_customers"), ORANGE)]),
    ]
    rates_reason = None
    if has("retention_rate") or has("churn_rate"):
        charts.append(_chart_monthly(
            "kpi-rates", "Retention rate and churn rate by month", months, partial,
            [("retention rate", series("retention_rate"), GREEN),
             ("churn rate", series("churn_rate"), VERMILION)], percent=True))
    else:
        rates_reason = ("Retention rate and churn rate are empty: they compare a month's "
                        "buyers with the previous month's, and no month has a previous month "
                        "with active customers yet.")
    has_nps, has_csat = has("nps"), has("csat")
    if has_nps or has_csat:
        charts.append(_chart_satisfaction(months, partial, series("nps") if has_nps else None,
                                          series("csat") if has_csat else None))
    satisfaction_reason = None
    if not (has_nps and has_csat):
        missing = " and ".join(n for n, has in (("NPS", has_nps), ("CSAT", has_csat)) if not has)
        satisfaction_reason = (f"{missing} {'are' if ' and ' in missing else 'is'} empty: no "
                               "survey responses with that score in the events (or no events "
                               "source).")
    partial_months = [m for m, p in zip(months, partial) if p]
    return {"reason": None, "rows": rows[-KPI_TABLE_MONTHS:], "months": len(rows),
            "first_month": months[0], "last_month": months[-1], "charts": charts,
            "satisfaction_reason": satisfaction_reason, "rates_reason": rates_reason,
            "partial_month": partial_months[-1] if partial_months else None}


def _bgnbd_section(parameters, parameters_reason, metrics, metrics_reason, runs) -> dict:
    fitted = [p for p in parameters if p["model"] in ("bgnbd", "gamma_gamma")]
    fitted.sort(key=lambda p: (p["model"] != "bgnbd", p["parameter"] == "penalizer"))
    reason = None
    if not any(p["model"] == "bgnbd" for p in fitted):
        reason = "No fitted BG/NBD parameters to show: " + (
            _why(runs, "bgnbd") or parameters_reason
            or "marts.model_parameters has no bgnbd rows for this run") + "."
    cells = _metric_cells(metrics)
    get = lambda model, metric: cells.get((model, metric), {})  # noqa: E731
    fit = {"customers": get("bgnbd", "customers").get("value"),
           "repeat_buyers": get("gamma_gamma", "repeat_buyers").get("value")}
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
        next_order = {k: get("next_order_date", k) for k in ("mae_days", "coverage",
                                                              "customers_scored")}
    holdout_reason = None
    if holdout is None:
        holdout_reason = "No holdout check to show: " + (
            _why(runs, "bgnbd_holdout") or _why(runs, "bgnbd") or metrics_reason
            or "the holdout check runs only when the BG/NBD model is fitted") + "."
    charts = [_chart_holdout(holdout)] if holdout else []
    return {"reason": reason, "parameters": fitted, "fit": fit, "holdout": holdout,
            "holdout_reason": holdout_reason, "next_order": next_order, "charts": charts}


def _lifecycle_section(by_dimension, segments_reason) -> dict:
    stages = _ordered(by_dimension.get("lifecycle_stage", []), LIFECYCLE_STAGES)
    actions = _ordered(by_dimension.get("recommended_action", []))
    charts = []
    for key, title, rows in (("lifecycle-stages", "Customers by lifecycle stage", stages),
                             ("recommended-actions", "Customers by recommended action", actions)):
        if rows:
            charts.append(_chart_bars(
                key, title, [label(r["segment"]) for r in rows],
                [[r["customers"] for r in rows], [r["consenting_customers"] for r in rows]],
                ["customers", "consenting customers"], colours=[BLUE, SKY], xlabel="customers"))
    reason = None
    if not stages and not actions:
        reason = "No lifecycle stages or recommended actions to show: " + (
            segments_reason or "marts.segment_summary has no lifecycle_stage or "
            "recommended_action rows for this run") + "."
    return {"reason": reason, "stages": stages, "actions": actions, "charts": charts}


# --------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Chart:
    """One inline SVG chart; ``marks`` is how many data marks (bars, lines) it draws."""

    key: str
    title: str
    svg: Markup
    marks: int


class _Marks:
    """Gives each data artist the id ``mark-<n>`` (prefixed with the chart key later)."""

    def __init__(self) -> None:
        self.count = 0

    def tag(self, artists: Iterable) -> None:
        for artist in artists:
            artist.set_gid(f"mark-{self.count}")
            self.count += 1


def _render(key: str, title: str, size: tuple[float, float],
            draw: Callable[[Figure, _Marks], None]) -> Chart:
    with matplotlib.rc_context({**_RC, "svg.hashsalt": key}):
        fig = Figure(figsize=size, layout="constrained")
        marks = _Marks()
        draw(fig, marks)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    return Chart(key=key, title=title, svg=Markup(_inline_svg(buffer.getvalue(), key, title)),
                 marks=marks.count)


def _inline_svg(svg: str, key: str, title: str) -> str:
    """Matplotlib's standalone SVG made fit to sit inside an HTML page: no XML prolog or
    DOCTYPE, no namespace URLs (HTML needs none), no global <style>, ids unique per chart,
    sized by CSS from its viewBox, with an accessible title."""
    svg = svg[svg.index("<svg"):]
    root_end = svg.index(">") + 1
    view_box = re.search(r'viewBox="([^"]+)"', svg[:root_end]).group(1)
    # At most 5/3 px per pt: a 7.5 in (540 pt) figure shows at up to 900 px, like the text.
    max_width = float(view_box.split()[2]) * 5 / 3
    body = svg[root_end:]
    body = re.sub(r"<style[^>]*>.*?</style>", "", body, flags=re.S)
    body = re.sub(r"<defs>\s*</defs>", "", body)
    body = body.replace("xlink:href=", "href=")
    body = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', body)
    body = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", body)
    body = re.sub(r'href="#([^"]+)"', rf'href="#{key}-\1"', body)
    if "http://" in body or "https://" in body:
        raise ValueError(f"chart {key} refers to a URL; the report must open offline")
    return (f'<svg class="chart-svg" id="chart-{key}" viewBox="{view_box}" '
            f'style="max-width: {max_width:.0f}px" role="img" '
            f'aria-labelledby="chart-{key}-title"><title id="chart-{key}-title">{escape(title)}'
            f"</title>{body}")


def _numbers(values) -> list[float]:
    return [math.nan if _missing(v) else float(v) for v in values]


def _thousands(value, _pos=None) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == 0 else f"{value:,.2g}"


def _bar_height(n: int, panels: int = 1) -> float:
    return max(1.8, 0.7 + (0.24 if panels == 1 else 0.17) * n * panels)


def _chart_bars(key, title, names, series, series_names, *, colours, xlabel,
                horizontal=True) -> Chart:
    """Bars per category; several series are grouped side by side."""
    n, k = len(names), len(series)

    def draw(fig, marks):
        ax = fig.add_subplot()
        width = 0.8 / k
        positions = range(n)
        for i, (values, name, colour) in enumerate(zip(series, series_names, colours)):
            offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
            if horizontal:
                bars = ax.barh(offsets, _numbers(values), height=width, color=colour, label=name)
            else:
                bars = ax.bar(offsets, _numbers(values), width=width, color=colour, label=name)
            marks.tag(bars.patches)
            ax.bar_label(bars, labels=[format_count(v) for v in values], padding=2, fontsize=7.5)
        if horizontal:
            ax.set_yticks(list(positions), names)
            ax.invert_yaxis()
            ax.set_xlabel(xlabel)
            ax.grid(axis="y", visible=False)
            ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
            ax.margins(x=0.12)
        else:
            ax.set_xticks(list(positions), names)
            ax.set_ylabel(xlabel)
            ax.grid(axis="x", visible=False)
            ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
            ax.margins(y=0.12)
        if k > 1:
            ax.legend(loc="lower right")

    size = (7.5, _bar_height(n, k)) if horizontal else (5.0, 2.6)
    return _render(key, title, size, draw)


def _chart_panels(key, title, names, panels) -> Chart:
    """One horizontal bar panel per measure, sharing the category axis."""

    def draw(fig, marks):
        axes = fig.subplots(1, len(panels), sharey=True)
        for ax, (measure, values, colour, fmt) in zip(axes, panels):
            bars = ax.barh(range(len(names)), _numbers(values), color=colour, height=0.7)
            marks.tag(bars.patches)
            ax.bar_label(bars, labels=[fmt(v) for v in values], padding=2, fontsize=7.5)
            ax.set_title(measure, fontsize=9, fontweight="normal")
            ax.grid(axis="y", visible=False)
            ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
            ax.margins(x=0.3)
            ax.tick_params(axis="x", labelsize=7.5)
        axes[0].set_yticks(range(len(names)), names)
        axes[0].invert_yaxis()

    return _render(key, title, (7.5, max(1.8, 0.8 + 0.26 * len(names))), draw)


def _chart_file_rows(files: list[dict]) -> Chart:
    """Rows per file, stacked by outcome: loaded, quarantined, duplicate."""
    names = [f["label"] for f in files]
    parts = [("rows loaded", "rows_loaded", BLUE), ("rows quarantined", "rows_quarantined",
                                                    VERMILION),
             ("rows duplicate", "rows_duplicate", ORANGE)]

    def draw(fig, marks):
        ax = fig.add_subplot()
        left = [0.0] * len(files)
        for name, column, colour in parts:
            values = [float(f[column]) for f in files]
            bars = ax.barh(range(len(files)), values, left=left, color=colour, label=name,
                           height=0.6)
            marks.tag(bars.patches)
            left = [a + b for a, b in zip(left, values)]
        ax.set_yticks(range(len(files)), names)
        ax.invert_yaxis()
        ax.set_xlabel("rows read")
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(files) < 3 else -0.2),
                  ncols=3)

    return _render("file-rows", "Rows per file: loaded, quarantined, duplicate",
                   (7.5, max(2.0, 1.2 + 0.35 * len(files))), draw)


def _chart_churn_metrics(quality: list[dict]) -> Chart:
    """Small multiples: one panel per metric, the churn model next to each baseline."""
    shown = [q for q in quality if q["metric"] in ("roc_auc", "pr_auc", "brier_score",
                                                    "top_decile_lift")]
    scorers = [("model", "churn model"), ("recency", "recency"), ("bgnbd", "1 − p_alive")]

    # One axis: the four metrics share a 0-1.x scale well enough to compare scorers per group.
    present = [(s, name) for s, name in scorers if any(not _missing(q[s]) for q in shown)]
    width = 0.8 / max(len(present), 1)

    def draw(fig, marks):
        ax = fig.add_subplot()
        for i, (scorer, name) in enumerate(present):
            values = [q[scorer] for q in shown]
            bars = ax.bar([g - 0.4 + width * (i + 0.5) for g in range(len(shown))],
                          _numbers(values), width=width, color=SCORER_COLOURS[scorer], label=name)
            marks.tag(bars.patches)
            ax.bar_label(bars, labels=[format_ratio(v) for v in values], padding=2, fontsize=7)
        ax.set_xticks(range(len(shown)), [
            f"{label(q['metric'])}\n({'lower' if q['lower_is_better'] else 'higher'} is better)"
            for q in shown])
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.12)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render("churn-metrics", "Churn model against the baselines on the test set",
                   (7.5, 2.8), draw)


def _chart_calibration(points: dict[str, list[tuple[float, float]]]) -> Chart:
    names = {"model": "churn model", "recency": "recency", "bgnbd": "1 − p_alive"}

    def draw(fig, marks):
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color=GREY, linewidth=0.8, linestyle="--",
                label="perfectly calibrated")
        for scorer, pairs in points.items():
            lines = ax.plot([p for p, _ in pairs], [o for _, o in pairs], marker="o",
                            markersize=3.5, color=SCORER_COLOURS[scorer], label=names[scorer])
            marks.tag(lines)
        ax.set_xlabel("mean churn probability (decile)")
        ax.set_ylabel("observed churn rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.legend(loc="upper left")

    return _render("churn-calibration", "Calibration: predicted and observed churn by decile",
                   (4.2, 3.6), draw)


def _chart_importances(importances: list[dict]) -> Chart:
    names = [label(i["feature"]) for i in importances]

    def draw(fig, marks):
        ax = fig.add_subplot()
        bars = ax.barh(range(len(names)), _numbers(i["importance_mean"] for i in importances),
                       xerr=[0 if _missing(i["importance_std"]) else i["importance_std"]
                             for i in importances],
                       color=PURPLE, height=0.7, error_kw={"ecolor": "#444444", "elinewidth": 0.8,
                                                           "capsize": 2})
        marks.tag(bars.patches)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("drop in test ROC AUC when the feature is shuffled (mean ± std)")
        ax.grid(axis="y", visible=False)
        ax.axvline(0, color="#555555", linewidth=0.6)

    return _render("churn-importances", f"Top {len(names)} permutation importances",
                   (7.5, max(2.0, 0.7 + 0.24 * len(names))), draw)


def _chart_monthly(key, title, months, partial, series, *, bars=False,
                   percent=False) -> Chart:
    """Monthly series as bars or lines; the partial as-of month is drawn hatched (bars)
    or with a hollow point (lines)."""

    def draw(fig, marks):
        ax = fig.add_subplot()
        drawn_series = 0
        for name, values, colour in series:
            values = _numbers(values)
            if all(math.isnan(v) for v in values):
                continue
            drawn_series += 1
            if bars:
                drawn = ax.bar(months, values, width=20, color=colour, label=name)
                for bar, is_partial in zip(drawn.patches, partial):
                    if is_partial:
                        bar.set_alpha(0.45)
                        bar.set_hatch("///")
                marks.tag(drawn.patches)
            else:
                marks.tag(ax.plot(months, values, color=colour, linewidth=1.6, marker="o",
                                  markersize=2.5, label=name))
                ends = [(m, v) for m, v, p in zip(months, values, partial) if p]
                if ends:
                    ax.plot(*zip(*ends), linestyle="none", marker="o", markersize=4,
                            markerfacecolor="white", markeredgecolor=colour)
        if percent:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", visible=False)
        _month_axis(ax)
        if len(series) > 1 and drawn_series:
            ax.legend(loc="upper left", ncols=len(series))

    return _render(key, title, (7.5, 2.5), draw)


def _month_axis(ax) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _chart_satisfaction(months, partial, nps, csat) -> Chart:
    """NPS in points (-100..100) and CSAT as the share of satisfied answers (0-1)."""
    panels = [p for p in (("NPS (points)", nps, BLUE, (-100, 100)),
                          ("CSAT (share satisfied)", csat, GREEN, (0, 1))) if p[1] is not None]

    def draw(fig, marks):
        axes = fig.subplots(1, len(panels), squeeze=False, sharex=True)[0]
        for ax, (name, values, colour, limits) in zip(axes, panels):
            values = _numbers(values)
            marks.tag(ax.plot(months, values, color=colour, linewidth=1.6,
                              marker="o", markersize=2.5))
            ends = [(m, v) for m, v, p in zip(months, values, partial) if p]
            if ends:
                ax.plot(*zip(*ends), linestyle="none", marker="o", markersize=4,
                        markerfacecolor="white", markeredgecolor=colour)
            ax.set_title(name, fontsize=9, fontweight="normal")
            ax.set_ylim(*limits)
            if limits == (0, 1):
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            ax.set_xlim(months[0] - timedelta(days=15), months[-1] + timedelta(days=15))
            ax.grid(axis="x", visible=False)
            _month_axis(ax)

    return _render("kpi-satisfaction", "NPS and CSAT by month", (7.5, 2.4), draw)


def _chart_holdout(holdout: dict) -> Chart:
    """Repeat purchases in the holdout window: actual, BG/NBD and the naive rate; MAE."""

    def draw(fig, marks):
        left, right = fig.subplots(1, 2, width_ratios=(3, 2))
        names = ["actual", "BG/NBD", "naive rate"]
        values = [holdout["actual"], holdout["predicted"].get("value"),
                  holdout["predicted"].get("baseline")]
        bars = left.bar(range(3), _numbers(values), color=[GREY, BLUE, ORANGE], width=0.65)
        marks.tag(bars.patches)
        left.bar_label(bars, labels=[format_money(v) for v in values], padding=2, fontsize=7.5)
        left.set_xticks(range(3), names)
        left.set_title("repeat purchases in the holdout window", fontsize=9,
                       fontweight="normal")
        left.yaxis.set_major_formatter(FuncFormatter(_thousands))
        mae = [holdout["mae"].get("value"), holdout["mae"].get("baseline")]
        bars = right.bar(range(2), _numbers(mae), color=[BLUE, ORANGE], width=0.6)
        marks.tag(bars.patches)
        right.bar_label(bars, labels=[format_ratio(v) for v in mae], padding=2, fontsize=7.5)
        right.set_xticks(range(2), names[1:])
        right.set_title("MAE per customer (lower is better)", fontsize=9, fontweight="normal")
        for ax in (left, right):
            ax.grid(axis="x", visible=False)
            ax.margins(y=0.15)

    return _render("clv-holdout", "BG/NBD holdout check: predicted and actual repeat purchases",
                   (7.5, 2.6), draw)


# --------------------------------------------------------------------------- writing


def _write_atomically(path: Path, text: str, run_id: str) -> Path:
    """Write beside ``path`` under publish's temporary name, then swap it in with
    :func:`pipelines.publish.publish_file_atomically` (readers see the old report or the
    new one, never a part; a failure leaves the old one). Leftovers of a crashed run are
    removed first."""
    from pipelines import publish

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
