"""The report's sections on the data and the customers: headline figures, data quality,
RFM segments, value tiers (CLV), KPI trends and lifecycle stages.

Each builder turns rows read by :mod:`pipelines.publish.report_data` into the dict its
template block shows, charts included (inline SVG from :mod:`pipelines.publish.charts`);
when its rows are absent it returns a one-sentence reason instead. The model sections
(churn risk, BG/NBD) are in :mod:`pipelines.publish.report_model_sections`.
"""

from __future__ import annotations

import duckdb

from models.segments import LIFECYCLE_STAGES, VALUE_TIERS
from pipelines.load.freshness import describe_staleness
from pipelines.publish.charts import (
    BLUE,
    GREEN,
    ORANGE,
    SKY,
    VERMILION,
    _chart_bars,
    _chart_file_rows,
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
    label,
)
from pipelines.publish.report_data import _load, _ordered, _why

FILE_MEASURES = ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate")
KPI_TABLE_MONTHS = 12


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


def _freshness_notes(con: duckdb.DuckDBPyConnection, run_id: str) -> list[str]:
    """One sentence per source the run found stale (``audit.source_freshness``), for the
    top of the page; none when every source is fresh or none is checked."""
    rows, _ = _load(
        con,
        "audit.source_freshness",
        ("source", "age_days", "status", "warn_after_days", "error_after_days"),
        run_id,
        order_by="status = 'warn', source",
    )
    return [
        f"Freshness: {describe_staleness(**r)}." for r in rows if r["status"] in ("warn", "error")
    ]


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
