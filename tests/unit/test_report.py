"""Tests for pipelines/publish/report.py: the self-contained HTML report of one run.

The report is rendered from hand-made tables in an in-memory DuckDB that follow the
published-table contract (docs/marts.md) with numbers taken from a run on the bundled
sample. That is quick, covers every section, and does not wait for the marts step.

The browser tests open the report in headless Chromium (Debian package ``chromium``) and
drive it over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL bytes on file descriptors 3 and 4), with the standard library only. They
collect uncaught exceptions, console and log errors and every network request, count the
data marks each chart drew, take a full-page screenshot and print to PDF. A last test
breaks a report on purpose in several ways and checks that the browser check fails.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import signal
import time
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from pipelines import files
from pipelines.publish import report
from pipelines.publish.report import write_report

RUN_ID = "20251231T120000-abcdef12"
OLD_RUN_ID = "20251130T120000-00000000"
AS_OF = date(2025, 12, 15)  # December is a partial month
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))

SECTIONS = (
    "data-quality",
    "rfm-segments",
    "value-tiers",
    "churn-risk",
    "kpi-trends",
    "bgnbd",
    "lifecycle",
)
# chart key -> data marks it draws for the warehouse below
CHARTS = {
    "file-rows": 9,  # 3 files x (loaded, quarantined, duplicate)
    "quarantine-rules": 4,  # 4 rules
    "rfm-segments": 14,  # 7 segments x (customers, revenue total)
    "clv-tiers": 12,  # 4 tiers x (customers, revenue total, total predicted CLV)
    "churn-bands": 4,  # low, medium, high, unassigned
    "churn-metrics": 12,  # 4 metrics x 3 scorers
    "churn-calibration": 3,  # 3 scorers
    "churn-importances": 10,  # top 10 of 12
    "kpi-revenue": 18,  # 18 months
    "kpi-customers": 2,  # 2 lines
    "kpi-rates": 2,
    "kpi-satisfaction": 2,  # NPS and CSAT
    "clv-holdout": 5,  # actual, BG/NBD, naive; 2 MAE bars
    "lifecycle-stages": 12,  # 6 stages x (customers, consenting customers)
    "recommended-actions": 14,  # 7 actions x 2
}


# --------------------------------------------------------------------------- warehouse


def _insert(con, table: str, rows: list[tuple]) -> None:
    marks = ", ".join("?" * len(rows[0]))
    con.executemany(f"insert into {table} values ({marks})", rows)


def build_warehouse(
    con: duckdb.DuckDBPyConnection,
    run_id: str = RUN_ID,
    as_of: date = AS_OF,
    *,
    with_old_run: bool = True,
) -> None:
    """The tables the report reads, as the pipeline leaves them after the marts step."""
    for schema in ("marts", "models", "audit"):
        con.execute(f"create schema if not exists {schema}")
    con.execute("""create table if not exists marts.data_quality (run_id varchar, as_of date,
        source varchar, file_name varchar, file_sha256 varchar, measure varchar, rule varchar,
        rows bigint)""")
    files = [
        ("transactions", "transactions.csv", "a1" * 32, 1000, 985, 10, 5),
        ("customers", "customers.csv", "b2" * 32, 200, 198, 2, 0),
        ("events", "events.jsonl", "c3" * 32, 500, 495, 3, 2),
    ]
    dq = []
    for source, name, sha, *counts in files:
        for measure, n in zip(report.FILE_MEASURES, counts):
            dq.append((run_id, as_of, source, name, sha, measure, None, n))
    for (source, name, sha, *_), rule, n in [
        (files[0], "amount_numeric", 6),
        (files[0], "order_ts_parseable", 4),
        (files[1], "customer_id_present", 2),
        (files[2], "reader: unterminated quote", 3),
    ]:
        dq.append((run_id, as_of, source, name, sha, "quarantined_by_rule", rule, n))
    dq.append(
        (
            run_id,
            as_of,
            "customers",
            "customers.csv",
            "b2" * 32,
            "field_blanked_by_rule",
            "email_shape",
            7,
        )
    )
    for measure, n in (("source_customer_ids", 198), ("customers", 180), ("customers_unified", 18)):
        dq.append((run_id, as_of, "all", None, None, measure, None, n))
    if with_old_run:
        dq.append(
            (
                OLD_RUN_ID,
                date(2025, 11, 30),
                "transactions",
                "transactions.csv",
                "d4" * 32,
                "rows_read",
                None,
                77777,
            )
        )
    _insert(con, "marts.data_quality", dq)

    con.execute("""create table if not exists marts.segment_summary (run_id varchar,
        as_of date, dimension varchar, segment varchar, customers bigint,
        share_of_customers double, consenting_customers bigint, revenue_total double,
        net_revenue double, average_predicted_clv double, total_predicted_clv double,
        average_churn_probability double)""")
    dimensions = {
        "rfm_segment": [
            ("champions", 40),
            ("loyal", 35),
            ("lost", 30),
            ("hibernating", 25),
            ("at_risk", 20),
            ("new_customers", 10),
            ("unassigned", 20),
        ],
        "value_tier": [("strategic", 9), ("key", 27), ("general", 124), ("potential", 20)],
        "churn_band": [("unassigned", 20), ("high", 50), ("medium", 50), ("low", 60)],
        "lifecycle_stage": [
            ("prospect", 20),
            ("new", 10),
            ("active", 60),
            ("at_risk", 40),
            ("lapsed", 45),
            ("reactivated", 5),
        ],
        "recommended_action": [
            ("win_back_offer", 45),
            ("retention_offer", 40),
            ("nurture", 30),
            ("vip_care", 25),
            ("first_purchase_offer", 20),
            ("personal_call_account_manager", 15),
            ("welcome_back", 5),
        ],
    }
    summary = []
    for dimension, segments in dimensions.items():
        for i, (segment, customers) in enumerate(segments):
            buyer = segment not in ("unassigned", "potential", "prospect", "first_purchase_offer")
            revenue = 0.0 if not buyer else 1234.5 * customers / (i + 1)
            clv = None if not buyer else 45.25 * customers / (i + 1)
            summary.append(
                (
                    run_id,
                    as_of,
                    dimension,
                    segment,
                    customers,
                    customers / 180,
                    customers * 3 // 4,
                    revenue,
                    revenue * 0.95,
                    None if clv is None else clv / customers,
                    clv,
                    None if not buyer else 0.2 + 0.1 * i,
                )
            )
    if with_old_run:
        summary.append(
            (
                OLD_RUN_ID,
                date(2025, 11, 30),
                "rfm_segment",
                "champions",
                66666,
                0.5,
                1,
                1.0,
                1.0,
                1.0,
                1.0,
                0.5,
            )
        )
    _insert(con, "marts.segment_summary", summary)

    con.execute("""create table if not exists marts.kpi_monthly (run_id varchar, as_of date,
        month date, active_customers bigint, new_customers bigint, returning_customers bigint,
        repeat_purchase_rate double, retention_rate double, churn_rate double, orders bigint,
        revenue double, average_order_value double, average_predicted_clv double, nps double,
        csat double, complaint_rate double, median_first_response_hours double,
        is_partial_month boolean)""")
    kpis = []
    for i in range(18):
        month = date(2024 + (6 + i) // 12, (6 + i) % 12 + 1, 1)
        active = 60 + 3 * i
        kpis.append(
            (
                run_id,
                as_of,
                month,
                active,
                5 + i % 4,
                active - 5 - i % 4,
                0.4 + 0.01 * i,
                0.70 + 0.005 * i,
                0.30 - 0.005 * i,
                80 + 4 * i,
                9000.0 + 250.0 * i,
                (9000.0 + 250.0 * i) / (80 + 4 * i),
                120.0,
                None if i < 3 else 20.0 + i,
                0.70 + 0.01 * i,
                0.02,
                6.5,
                i == 17,
            )
        )
    _insert(con, "marts.kpi_monthly", kpis)

    con.execute("""create table if not exists marts.model_parameters (run_id varchar,
        as_of date, model varchar, parameter varchar, value double, std_error double)""")
    _insert(
        con,
        "marts.model_parameters",
        [
            (run_id, as_of, "bgnbd", "r", 0.8226240150386376, 0.02603772052698991),
            (run_id, as_of, "bgnbd", "alpha", 49.96839597263049, 2.20065045374458),
            (run_id, as_of, "bgnbd", "a", 0.8630835584372563, 0.06932237973752299),
            (run_id, as_of, "bgnbd", "b", 3.1679323839119973, 0.35393368374576095),
            (run_id, as_of, "bgnbd", "penalizer", 0.0, None),
            (run_id, as_of, "gamma_gamma", "p", 5.263767265173527, 0.5146468319492049),
            (run_id, as_of, "gamma_gamma", "q", 4.6282528747368215, 0.19543456744155951),
            (run_id, as_of, "gamma_gamma", "gamma", 46.25594937918027, 6.183337682112537),
            (run_id, as_of, "gamma_gamma", "penalizer", 0.0, None),
        ]
        + ([(OLD_RUN_ID, date(2025, 11, 30), "bgnbd", "r", 0.5555, 0.1)] if with_old_run else []),
    )

    con.execute("""create table if not exists marts.model_metrics (run_id varchar,
        as_of date, model varchar, metric varchar, value double, baseline double,
        message varchar)""")
    metrics = [
        ("bgnbd", "customers", 160.0, None),
        ("bgnbd", "holdout_actual_repeat_purchases", 1071.0, 1071.0),
        ("bgnbd", "holdout_customers", 160.0, 160.0),
        ("bgnbd", "holdout_mae_repeat_purchases", 0.36569475100844184, 0.5878062565184419),
        ("bgnbd", "holdout_predicted_repeat_purchases", 1078.2819026740917, 1965.8491444953345),
        (
            "bgnbd",
            "holdout_total_purchases_relative_error",
            0.006799162160683217,
            0.8355267455605364,
        ),
        ("gamma_gamma", "repeat_buyers", 141.0, None),
        ("churn", "churn_rate", 0.8096666666666666, None),
        ("churn", "n_customers", 150.0, None),
        ("next_order_date", "coverage", 0.7740805604203153, 0.9387040280210157),
        ("next_order_date", "customers_scored", 44.0, 44.0),
        ("next_order_date", "mae_days", 47.64932126696833, 47.31221719457014),
        ("next_order_date", "harrell_c", 0.7123, 0.6544),
        ("next_order_verdict", "p_order_next_90d_brier_score", 0.0898, 0.1079),
        ("next_order_verdict", "p_order_next_90d_brier_score_margin", 0.0181, None),
        ("next_order_verdict", "p_order_next_90d_brier_score_margin_ci_low", 0.0166, None),
        ("next_order_verdict", "p_order_next_90d_brier_score_margin_ci_high", 0.0196, None),
        ("next_order_verdict", "p_order_next_90d_brier_score_significant", 1.0, None),
        ("next_order_verdict", "p_order_next_90d_naive_rule", 0.0, None),
        ("next_order_verdict", "p_order_next_90d_model_published", 1.0, None),
        ("next_order_verdict", "expected_next_order_date_mae_days", 47.65, 47.31),
        ("next_order_verdict", "expected_next_order_date_mae_days_margin", -0.34, None),
        ("next_order_verdict", "expected_next_order_date_mae_days_margin_ci_low", -5.1, None),
        ("next_order_verdict", "expected_next_order_date_mae_days_margin_ci_high", 4.4, None),
        ("next_order_verdict", "expected_next_order_date_mae_days_significant", 0.0, None),
        ("next_order_verdict", "expected_next_order_date_model_published", 0.0, None),
    ]
    model = {
        "roc_auc": 0.9007627478533972,
        "pr_auc": 0.9738232604402259,
        "brier_score": 0.09294795208336154,
        "log_loss": 0.29506099788056644,
        "top_decile_lift": 1.23095924248662,
        "top_decile_capture_rate": 0.123095924248662,
    }
    recency = {
        "roc_auc": 0.842208385395675,
        "pr_auc": 0.9518159639509121,
        "brier_score": 0.11355245368730607,
        "log_loss": 0.36819286145874625,
        "top_decile_lift": 1.2186084808563196,
        "top_decile_capture_rate": 0.12186084808563195,
    }
    bgnbd = {
        "roc_auc": 0.7515269016603952,
        "pr_auc": 0.9387683354085072,
        "brier_score": 0.13689242420689526,
        "log_loss": 0.41765919796535705,
        "top_decile_lift": 1.2350761630300535,
        "top_decile_capture_rate": 0.12350761630300536,
    }
    for metric, value in model.items():
        metrics.append(("churn_vs_recency", metric, value, recency[metric]))
        metrics.append(("churn_vs_p_no_purchase", metric, value, bgnbd[metric]))
    for k in range(1, 11):
        for baseline_name, shift in (("churn_vs_recency", 0.05), ("churn_vs_p_no_purchase", -0.04)):
            predicted = 0.05 + 0.09 * k
            metrics.append(
                (baseline_name, f"calibration_bin_{k}_predicted", predicted, predicted + shift)
            )
            metrics.append(
                (baseline_name, f"calibration_bin_{k}_observed", predicted + 0.01, predicted)
            )
    statuses = [
        ("bgnbd", "fitted: penalizer 0.0"),
        ("gamma_gamma", "fitted: penalizer 0.0"),
        ("bgnbd_holdout", "fitted: calibration ends 2025-09-16"),
        (
            "churn",
            "fitted: The churn model beats the best baseline (recency) on test "
            "ROC AUC: 0.901 vs 0.842.",
        ),
    ]
    _insert(
        con,
        "marts.model_metrics",
        [(run_id, as_of, *m, None) for m in metrics]
        + [(run_id, as_of, model, "is_fitted", 1.0, None, message) for model, message in statuses]
        + (
            [(OLD_RUN_ID, date(2025, 11, 30), "churn_vs_recency", "roc_auc", 0.4444, 0.3, None)]
            if with_old_run
            else []
        ),
    )

    con.execute("""create table if not exists models.churn_importances (run_id varchar,
        feature varchar, importance_mean double, importance_std double)""")
    features = [
        "days_since_last_event",
        "page_view_events_last_180d",
        "p_alive",
        "expected_purchases",
        "email_click_to_open_rate",
        "gap_mean_days",
        "days_since_last_order",
        "revenue_last_180d",
        "nps_last",
        "order_count",
        "csat_last",
        "age_years",
    ]
    _insert(
        con,
        "models.churn_importances",
        [(run_id, f, 0.06 / (i + 1) - 0.004, 0.002) for i, f in enumerate(features)],
    )

    con.execute("""create table if not exists audit.runs (run_id varchar, started_at timestamp,
        config_path varchar)""")
    _insert(con, "audit.runs", [(run_id, datetime(2025, 12, 16, 2, 0, 0), "/srv/crm/crm.toml")])


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> tuple[Path, str]:
    """One report from the full warehouse, shared by the tests that only read it (a render
    draws 15 charts and takes a few seconds)."""
    con = duckdb.connect(":memory:")
    build_warehouse(con)
    out = tmp_path_factory.mktemp("report") / "reports" / str(AS_OF) / "report.html"
    path = write_report(con, out, run_id=RUN_ID, as_of=AS_OF, currency="EUR")
    con.close()
    return path, path.read_text(encoding="utf-8")


def _section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', html, flags=re.S)
    assert match, f"section {section_id} missing"
    return match.group(0)


def _row(html: str, attribute: str, value: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(value)}">.*?</tr>', html, flags=re.S)
    assert match, f"row {attribute}={value} missing"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", match.group(0))).strip()


# --------------------------------------------------------------------------- content


def test_report_has_every_section_and_the_key_numbers(report_html):
    path, html = report_html
    assert path.name == "report.html" and path.parent.name == "2025-12-15"
    for section in SECTIONS:
        _section(html, section)
    assert RUN_ID in html and "2025-12-15" in html and "generated" in html
    for key in CHARTS:
        assert f'data-chart="{key}"' in html, key

    dq = _section(html, "data-quality")
    assert "transactions.csv" in dq and "1,000" in dq and "985" in dq
    assert "amount_numeric" in dq and "email_shape" in dq and "reader: unterminated quote" in dq
    assert "a1a1a1a1a1a1" in dq
    assert 'data-field="rows_duplicate">7<' in dq  # 5 + 0 + 2
    assert 'data-field="customers_unified">18<' in dq and "198" in dq

    rfm = _section(html, "rfm-segments")
    assert _row(rfm, "data-segment", "champions").startswith("champions 40 22.2% 30 49,380")
    assert _row(rfm, "data-segment", "new_customers").startswith("new customers 10")
    assert _row(rfm, "data-segment", "unassigned").startswith("unassigned 20")
    assert rfm.index('"new_customers"') < rfm.index('"unassigned"')  # unassigned last

    tiers = _section(html, "value-tiers")
    assert "predicted CLV" in tiers and "value tier" in tiers
    assert _row(tiers, "data-segment", "strategic").startswith("strategic 9 5.0% 6 11,110")
    assert tiers.index('data-segment="strategic"') < tiers.index('data-segment="potential"')

    churn = _section(html, "churn-risk")
    assert _row(churn, "data-metric", "roc_auc") == "ROC AUC 0.901 0.842 0.752 higher is better"
    assert (
        _row(churn, "data-metric", "brier_score") == "Brier score 0.093 0.114 0.137 lower is better"
    )
    assert _row(churn, "data-metric", "top_decile_lift").startswith(
        "top-decile lift 1.231 1.219 1.235"
    )
    assert "<strong>The churn model beats the best baseline (recency)" in churn
    assert [b for b in re.findall(r'data-segment="(\w+)"', churn)] == [
        "low",
        "medium",
        "high",
        "unassigned",
    ]
    assert "days since last event" in churn and "0.0560" in churn  # top importance
    assert "age years" not in churn  # 12th of 12: not in top 10

    kpis = _section(html, "kpi-trends")
    assert "18 months, July 2024 to December 2025" in kpis
    assert "2025-12 (partial)" in kpis and "13,250" in kpis  # December revenue
    assert "December 2025 is a partial month (as of 2025-12-15)" in kpis
    assert "87.0%" in kpis  # December CSAT share
    assert "2024-07" not in kpis.split("<table")[1]  # table: last 12 months

    bgnbd = _section(html, "bgnbd")
    assert _row(bgnbd, "data-parameter", "bgnbd.r") == "BG/NBD r 0.8226 0.02604"
    assert _row(bgnbd, "data-parameter", "gamma_gamma.gamma") == "Gamma-Gamma gamma 46.26 6.183"
    assert _row(bgnbd, "data-metric", "holdout_mae_repeat_purchases") == (
        "MAE per customer (repeat purchases) 0.366 0.588"
    )
    assert "1,071.0" in bgnbd and "1,078.3" in bgnbd and "1,965.8" in bgnbd
    assert "calibration ends 2025-09-16" in bgnbd
    assert _row(bgnbd, "data-metric", "next_order_date.harrell_c").endswith("0.712 0.654")
    verdicts = re.findall(r'data-verdict="next_order">([^<]*)<', bgnbd)
    assert verdicts == [
        "Next order, expected_next_order_date: mae_days 47.65 vs 47.31, margin -0.34 (95% -5.1 "
        "to +4.4, significant no); published the naive rule&#39;s values (last order + average "
        "gap).",
        "Next order, p_order_next_90d: brier_score 0.0898 vs 0.1079, margin +0.0181 (95% +0.0166 "
        "to +0.0196, significant yes); published the model&#39;s values.",
    ]

    lifecycle = _section(html, "lifecycle")
    assert _row(lifecycle, "data-segment", "win_back_offer").startswith("win back offer 45 33")
    assert "personal call account manager" in lifecycle
    assert 'class="unavailable"' not in html


def test_report_shows_only_this_runs_rows_of_the_history_tables(report_html):
    _, html = report_html
    for number in ("77,777", "66,666", "0.5555", "0.444"):
        assert number not in html


def test_report_is_self_contained_and_references_nothing_outside_the_file(report_html):
    _, html = report_html
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html)
    assert not re.search(r"\b(src|srcset)=", html)
    assert "@import" not in html and "@font-face" not in html
    assert re.findall(r"url\(([^)]*)\)", html) and all(
        u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", html)
    )
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids repeat across the inlined charts"


def test_sections_without_data_say_why_instead_of_failing(tmp_path):
    con = duckdb.connect(":memory:")
    path = write_report(con, tmp_path / "report.html", run_id=RUN_ID, as_of=AS_OF)
    html = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert 'class="unavailable"' in _section(html, section), section
    assert "marts.segment_summary is not in the warehouse" in html
    assert "marts.kpi_monthly is not in the warehouse" in html
    assert "<svg" not in html


def test_skipped_clv_and_missing_surveys_are_explained(tmp_path):
    con = duckdb.connect(":memory:")
    build_warehouse(con, with_old_run=False)
    reason = "2 repeat buyers; the BG/NBD needs at least 20"
    con.execute(
        "update marts.segment_summary set average_predicted_clv = null, total_predicted_clv = null"
    )
    con.execute("delete from marts.model_parameters")
    con.execute(
        "delete from marts.model_metrics where model in ('bgnbd', 'gamma_gamma', 'bgnbd_holdout')"
    )
    con.execute(
        "insert into marts.model_metrics values (?, ?, 'bgnbd', 'is_fitted', 0, null, ?)",
        [RUN_ID, AS_OF, f"skipped: {reason}"],
    )
    con.execute("update marts.kpi_monthly set nps = null, csat = null")
    con.execute("delete from models.churn_importances")
    html = write_report(con, tmp_path / "report.html", run_id=RUN_ID, as_of=AS_OF).read_text(
        encoding="utf-8"
    )
    tiers = _section(html, "value-tiers")
    assert (
        f"Predicted CLV is empty in this run, so tiers rank customers by revenue: BG/NBD "
        f"skipped: {reason}." in tiers
    )
    assert 'data-chart="clv-tiers"' in tiers  # tiers still shown
    bgnbd = _section(html, "bgnbd")
    assert f"No fitted BG/NBD parameters to show: BG/NBD skipped: {reason}." in bgnbd
    assert "No holdout check to show" in bgnbd
    kpis = _section(html, "kpi-trends")
    assert "NPS and CSAT are empty" in kpis and 'data-chart="kpi-satisfaction"' not in kpis
    assert "No permutation importances to show" in _section(html, "churn-risk")


def test_a_stale_source_is_warned_about_at_the_top(tmp_path):
    from pipelines.sqlrun import ensure_bookkeeping_tables

    con = duckdb.connect(":memory:")
    build_warehouse(con)
    ensure_bookkeeping_tables(con)  # audit.source_freshness as the pipeline creates it
    _insert(
        con,
        "audit.source_freshness",
        [
            (RUN_ID, "events", datetime(2025, 12, 6), 9, 7, None, "warn", "...", None),
            (RUN_ID, "transactions", datetime(2025, 12, 15), 0, 3, 7, "ok", "...", None),
            (RUN_ID, "customers", None, None, 1, None, "warn", "...", None),
            (OLD_RUN_ID, "transactions", datetime(2025, 11, 1), 29, 3, None, "warn", "...", None),
        ],
    )
    html = write_report(con, tmp_path / "report.html", run_id=RUN_ID, as_of=AS_OF).read_text(
        encoding="utf-8"
    )
    notes = re.findall(r'<p class="stale" data-field="freshness">(.*?)</p>', html)
    assert notes == [
        "Freshness: customers has no row dated on or before the as-of date (warn after 1 day).",
        "Freshness: events is 9 days old (warn after 7 days).",
    ]
    header = html.split("</header>")[0]
    assert all(note in header for note in notes)  # at the top, above the sections
    con.execute("update audit.source_freshness set status = 'ok'")
    html = write_report(con, tmp_path / "report.html", run_id=RUN_ID, as_of=AS_OF).read_text(
        encoding="utf-8"
    )
    assert 'data-field="freshness"' not in html


def test_report_replaces_the_old_file_atomically(tmp_path, monkeypatch):
    warehouse = duckdb.connect(":memory:")  # sections without data: quick to render
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")

    def fail(*_args):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(files.os, "replace", fail)
        with pytest.raises(OSError, match="disk full"):
            write_report(warehouse, target, run_id=RUN_ID, as_of=AS_OF)
    assert target.read_text(encoding="utf-8") == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    (tmp_path / ".report.html.tmp-crashed-run").write_text("half a rep", encoding="utf-8")
    write_report(warehouse, target, run_id=RUN_ID, as_of=AS_OF)
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert target.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- browser

requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is absent: install Debian's 'chromium' package "
    "to run the real-browser check of the report",
)


class DevToolsError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe.

    ``--remote-debugging-pipe`` makes Chromium read commands from fd 3 and write replies
    and events to fd 4, each a JSON object ended by a NUL byte. The process is started
    with ``os.posix_spawn``, which places the pipe ends on fds 3 and 4 without running
    Python code in the child, in its own session so it can be stopped with its helpers.
    """

    def __init__(self, executable: Path, workdir: Path, timeout: float = 30.0):
        self.timeout = timeout
        self.log_path = workdir / "chromium.log"
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # Move the child's ends above 9 so the dup2 onto fds 3 and 4 cannot clobber them.
        child_read = fcntl.fcntl(commands_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(replies_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(commands_read)
        os.close(replies_write)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        args = [
            str(executable),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            f"--user-data-dir={workdir / 'profile'}",
            "about:blank",
        ]
        try:
            self.pid = os.posix_spawn(
                args[0],
                args,
                dict(os.environ),
                setsid=True,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, null_fd, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                    (os.POSIX_SPAWN_DUP2, child_read, 3),
                    (os.POSIX_SPAWN_DUP2, child_write, 4),
                ],
            )
        finally:
            for fd in (child_read, child_write, log_fd, null_fd):
                os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []

    # -- protocol

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._commands, data) :]
        except BrokenPipeError:
            raise DevToolsError(
                f"Chromium is gone (sending {method}); its log:\n{self.log_tail()}"
            ) from None
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline, f"the reply to {method}")
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    return event
            self._events.append(self._read(deadline, f"the event {method}"))

    def _read(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready = select.select([self._replies], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                raise TimeoutError(
                    f"Chromium sent no {waiting_for} in {self.timeout:.0f} s; "
                    f"its log:\n{self.log_tail()}"
                )
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise DevToolsError(
                    f"Chromium closed the pipe while we waited for "
                    f"{waiting_for}; its log:\n{self.log_tail()}"
                )
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def events(self, session: str) -> list[dict]:
        return [e for e in self._events if e.get("sessionId") == session]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- lifetime

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (DevToolsError, TimeoutError, OSError):
            pass
        exited = self._wait(10)
        try:  # our own session: the browser's helper processes, and the browser if it hangs
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not exited:
            self._wait(10)
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass

    def _wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                return True
            time.sleep(0.05)
        return False


# Runs in the page: what each chart drew, the sections, and the text.
INSPECT_PAGE = r"""
(() => {
  const charts = [...document.querySelectorAll('figure.chart')].map(figure => {
    const key = figure.dataset.chart;
    const svg = figure.querySelector('svg');
    const marks = svg ? [...svg.querySelectorAll(`[id^="${key}-mark-"]`)] : [];
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {
      key, expected: Number(figure.dataset.marks), marks: marks.length,
      drawn: marks.filter(m => { const b = m.getBBox(); return b.width * b.height > 0; }).length,
      paths: svg ? svg.querySelectorAll('path').length : 0,
      texts: svg ? [...svg.querySelectorAll('text')].filter(t => t.getComputedTextLength() > 0).length : 0,
      width: box.width, height: box.height,
    };
  });
  return {
    title: document.title,
    sections: [...document.querySelectorAll('section[data-section]')].map(s => s.id),
    charts,
    text: document.body.innerText,
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
  };
})()
"""


def inspect_report(browser: Chromium, path: Path, *, capture: bool = True) -> dict:
    """Open ``path`` in a new tab; return the page facts, the problems (exceptions,
    console/log errors, network requests, charts that drew nothing) and, with ``capture``,
    a full-page screenshot (PNG) and the printed PDF."""
    url = path.resolve().as_uri()
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        navigation = browser.send("Page.navigate", {"url": url}, session=session)
        browser.wait_for("Page.loadEventFired", session)
        page = browser.send(
            "Runtime.evaluate", {"expression": INSPECT_PAGE, "returnByValue": True}, session=session
        )
        if "exceptionDetails" in page:
            raise DevToolsError(f"the page inspection failed: {page['exceptionDetails']}")
        facts = page["result"]["value"]
        screenshot = pdf = None
        if capture:
            size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            screenshot = base64.b64decode(
                browser.send(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {
                            "x": 0,
                            "y": 0,
                            "width": size["width"],
                            "height": size["height"],
                            "scale": 1,
                        },
                    },
                    session=session,
                )["data"]
            )
            pdf = base64.b64decode(
                browser.send(
                    "Page.printToPDF",
                    {"printBackground": True, "preferCSSPageSize": True},
                    session=session,
                )["data"]
            )
        events = browser.events(session)
    finally:
        browser.send("Target.closeTarget", {"targetId": target})

    problems = []
    if navigation.get("errorText"):
        problems.append(f"navigation failed: {navigation['errorText']}")
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems.append(
                "uncaught exception: "
                + details.get("exception", {}).get("description", details.get("text", ""))
            )
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            problems.append(
                f"console {params['type']}: "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            problems.append(f"log {entry['level']} ({entry['source']}): {entry['text']}")
        elif method == "Network.requestWillBeSent" and params["request"]["url"] != url:
            problems.append(f"network request: {params['request']['url']}")
        elif method == "Network.loadingFailed":
            problems.append(f"loading failed: {params.get('errorText')}")
    for chart in facts["charts"]:
        if chart["expected"] < 1 or chart["marks"] != chart["expected"] or chart["drawn"] < 1:
            problems.append(
                f"chart {chart['key']} drew {chart['drawn']} of {chart['marks']} "
                f"marks, expected {chart['expected']}"
            )
        if chart["width"] < 200 or chart["height"] < 60 or chart["texts"] < 3:
            problems.append(
                f"chart {chart['key']} is {chart['width']:.0f}x"
                f"{chart['height']:.0f} px with {chart['texts']} drawn texts"
            )
    for word in ("NaN", "None", "undefined", "{{", "{%"):
        if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", facts["text"]):
            problems.append(f"the page text contains {word!r}")
    if facts["width"] > 1200:
        problems.append(f"the page is {facts['width']} px wide in a 1200 px window")
    return {"facts": facts, "problems": problems, "screenshot": screenshot, "pdf": pdf}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's 'chromium' package")
    chromium = Chromium(CHROMIUM, tmp_path_factory.mktemp("chromium"))
    yield chromium
    chromium.close()


@requires_chromium
@pytest.mark.browser
@pytest.mark.timeout(180)
def test_report_renders_in_headless_chromium_without_errors(browser, report_html, tmp_path):
    from PIL import Image

    path, _ = report_html
    result = inspect_report(browser, path)
    assert result["problems"] == []
    facts = result["facts"]
    assert facts["title"] == "CRM run report — as of 2025-12-15"
    assert tuple(facts["sections"]) == SECTIONS
    drawn = {c["key"]: c for c in facts["charts"]}
    assert {k: c["marks"] for k, c in drawn.items()} == CHARTS
    assert all(c["paths"] > c["marks"] for c in drawn.values())  # axes, ticks and the marks
    # every mark has an area where its value is not 0 (unassigned customers have no revenue)
    assert drawn["rfm-segments"]["drawn"] == CHARTS["rfm-segments"] - 1
    assert drawn["lifecycle-stages"]["drawn"] == CHARTS["lifecycle-stages"]
    assert drawn["kpi-revenue"]["drawn"] == CHARTS["kpi-revenue"]

    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(result["screenshot"])
    with Image.open(screenshot) as image:
        assert image.width >= 1000 and image.height >= 4000, image.size
        pixels = image.convert("RGB").resize((200, 800))
        colours = pixels.getcolors(maxcolors=200 * 800)
        white = max(count for count, colour in colours if colour == (255, 255, 255))
        assert len(colours) > 100 and white < 0.93 * 200 * 800  # charts and text, not blank
    assert result["pdf"].startswith(b"%PDF") and result["pdf"].count(b"/Type /Page") >= 4


@requires_chromium
@pytest.mark.browser
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "damage, expected",
    [
        pytest.param(damage, expected, id=damage)
        for damage, expected in [
            ("external_image", "network request: https://cdn.example.com/logo.png"),
            ("script", "Content Security Policy"),
            ("broken_path", "attribute d"),
            ("empty_chart", "chart rfm-segments drew 0 of 0 marks, expected 14"),
            ("missing_value", "the page text contains 'NaN'"),
        ]
    ],
)
def test_browser_check_fails_on_a_broken_report(browser, report_html, tmp_path, damage, expected):
    _, html = report_html
    if damage == "external_image":
        html = html.replace("</main>", '<img src="https://cdn.example.com/logo.png" alt=""></main>')
    elif damage == "script":
        html = html.replace("</main>", "<script>document.title = missing();</script></main>")
    elif damage == "broken_path":
        html = html.replace('d="M ', 'd="Q oops ', 1)
    elif damage == "empty_chart":
        html = re.sub(r'<g id="rfm-segments-mark-\d+">', "<g>", html)
    elif damage == "missing_value":
        html = html.replace(">0.901<", ">NaN<", 1)
    broken = tmp_path / "broken.html"
    broken.write_text(html, encoding="utf-8")
    problems = inspect_report(browser, broken, capture=False)["problems"]
    assert any(expected in p for p in problems), problems
