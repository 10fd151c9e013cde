"""Next order: P(order within h days), the next order date, Harrell's C, the naive rules and the
verdict that decides which values are published (models/clv/next_order.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import product

import duckdb
import numpy as np
import polars as pl
import pytest

from models.clv import BetaGeoModel
from models.clv.next_order import (
    describe_next_order_verdict,
    harrell_c,
    naive_order_probabilities,
    predict_next_order_offsets,
    predict_order_probabilities,
    published_sources,
    score_next_order,
)
from models.clv.predict import predict_naive_next_order_dates
from pipelines.config import settings_from_dict
from pipelines.errors import ConfigError
from pipelines.scoring.value import (
    ValueReport,
    _publish_naive_where_model_loses,
    _write_predictions,
)
from pipelines.sqlrun import ensure_bookkeeping_tables
from pipelines.summary import format_value_summary
from tests.unit.test_clv import DATASETS, HOLDOUT_SQL, load_cdnow


def brute_force_c(predicted, time, event) -> float:
    """Harrell's C by looking at every ordered pair (the O(n²) definition)."""
    predicted = np.where(np.isnan(predicted), np.inf, predicted)
    concordant = comparable = 0.0
    for i, j in product(range(len(time)), repeat=2):
        if event[i] and time[i] < time[j]:
            comparable += 1
            if predicted[i] < predicted[j]:
                concordant += 1
            elif predicted[i] == predicted[j]:
                concordant += 0.5
    return concordant / comparable


@pytest.mark.parametrize("dense_limit", [4_000_000, 0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harrell_c_equals_the_pair_by_pair_count(seed, dense_limit):
    # few distinct times and predictions, so ties of both kinds occur; some predictions missing
    rng = np.random.default_rng(seed)
    n = 150
    time = rng.integers(0, 12, n).astype(float)
    event = rng.random(n) < 0.6
    predicted = rng.integers(0, 9, n).astype(float)
    predicted[rng.random(n) < 0.2] = np.nan
    assert harrell_c(predicted, time, event, dense_limit=dense_limit) == pytest.approx(
        brute_force_c(predicted, time, event), abs=1e-12
    )


def test_harrell_c_counts_only_pairs_whose_earlier_time_is_an_event():
    # a orders on day 1, b on day 5, c is censored at day 3, d censored at day 9
    time = np.array([1.0, 5.0, 3.0, 9.0])
    event = np.array([True, True, False, False])
    # comparable pairs: (a, b), (a, c), (a, d), (b, d); c censored before b says nothing
    assert harrell_c(np.array([1.0, 2.0, 3.0, 4.0]), time, event) == 1.0
    # b predicted after d: (b, d) discordant; c's prediction only meets a's
    assert harrell_c(np.array([1.0, 9.0, 0.5, 4.0]), time, event) == pytest.approx(2 / 4)
    # no date ranks last: a missing date for d is as good as the latest
    assert harrell_c(np.array([1.0, 2.0, 3.0, np.nan]), time, event) == 1.0
    assert harrell_c(np.array([1.0]), np.array([1.0]), np.array([True])) is None


def test_naive_rules_are_the_customers_own_rate_and_the_recent_share():
    summary = pl.DataFrame(
        {
            "frequency": [3, 0, 1, 2],
            "recency": [50.0, 0.0, 10.0, 5.0],
            "T": [60.0, 40.0, 100.0, 10.0],
        }
    )
    rules = naive_order_probabilities(summary, horizon_days=30)
    expected = 1 - np.exp(-np.array([3 / 60, 0, 1 / 100, 2 / 10]) * 30)
    np.testing.assert_allclose(rules["rate_rule"], expected)
    # observed >= 30 days: the first three; of them only the first bought in the last 30 days
    # (last order 10 days ago); the second never repeated, the third's last order was 90 days ago
    np.testing.assert_allclose(rules["recent_share"], np.full(4, 1 / 3))
    # the same customers in weeks give the same probabilities
    weekly = summary.with_columns(pl.col("recency", "T") / 7)
    np.testing.assert_allclose(
        naive_order_probabilities(weekly, horizon_days=30, unit_days=7)["rate_rule"], expected
    )


@pytest.fixture(scope="module")
def fitted():
    """A BG/NBD fitted on 3,000 customers simulated from known parameters (days)."""
    rng = np.random.default_rng(5)
    n, r, alpha, a, b = 3000, 0.6, 30.0, 0.8, 3.0
    rate = rng.gamma(r, 1 / alpha, n)
    dropout = rng.beta(a, b, n)
    age = rng.uniform(60, 400, n)
    repeats, last = np.zeros(n, dtype=int), np.zeros(n)
    time, active = np.zeros(n), np.ones(n, dtype=bool)
    while active.any():
        time[active] += rng.exponential(1 / rate[active])
        bought = active & (time <= age)
        repeats[bought] += 1
        last[bought] = time[bought]
        active = bought & (rng.random(n) >= dropout)
    summary = pl.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "frequency": repeats,
            "recency": last,
            "T": age,
        }
    )
    return BetaGeoModel().fit(summary), summary


def test_order_probabilities_are_one_minus_p_no_purchase(fitted):
    model, summary = fitted
    out = predict_order_probabilities(model, summary, (30, 90))
    assert list(out) == ["p_order_next_30d", "p_order_next_90d"]
    np.testing.assert_allclose(
        out["p_order_next_90d"], 1 - model.predict_p_no_purchase(summary, horizon_days=90)
    )
    assert np.all(out["p_order_next_30d"] <= out["p_order_next_90d"])


def test_next_order_date_is_the_first_day_with_half_the_chance_of_ordering_in_the_horizon(fitted):
    model, summary = fitted
    offsets = predict_next_order_offsets(model, summary, max_days=365, min_probability=0.5)

    def p_order(days):
        return 1 - model.predict_p_no_purchase(summary, horizon_days=days)

    within = p_order(365.0)
    dated = np.isfinite(offsets)
    # a date exactly where ordering within the horizon is at least as likely as not
    assert dated.tolist() == (within >= 0.5).tolist()
    assert 0 < dated.sum() < summary.height
    d = offsets[dated]
    assert d.min() >= 1 and d.max() <= 365 and np.all(d == np.round(d))
    # day d reaches half of P(order within 365 days); the day before does not
    assert np.all(p_order(np.where(dated, offsets, 1.0))[dated] >= within[dated] / 2 - 1e-12)
    before = d > 1
    earlier = p_order(np.where(dated, offsets - 1, 1.0))[dated]
    assert np.all(earlier[before] < within[dated][before] / 2)


def test_the_verdict_publishes_what_beats_its_naive_rule():
    rng = np.random.default_rng(3)
    n = 4000
    # actual first order day in a 90-day window (NaN: none); a model that knows the truth
    # well, naive rules that are noise
    rate = rng.gamma(1.0, 1 / 60, n)
    wait = rng.exponential(1 / rate)
    next_days = np.where(wait <= 90, np.ceil(wait), np.nan)
    model_p = {"p_order_next_90d": -np.expm1(-rate * 90), "p_order_next_30d": -np.expm1(-rate * 30)}
    naive_p = {h: {"rate_rule": rng.random(n), "recent_share": np.full(n, 0.5)} for h in (30, 90)}
    model_days = np.ceil(np.log(2) / rate)
    naive_days = rng.integers(1, 200, n).astype(float)
    metrics = score_next_order(
        model_p, naive_p, model_days, naive_days, next_days, window_days=90, resamples=50
    )
    verdict = dict(
        metrics.filter(pl.col("model") == "next_order_verdict").select("metric", "value").rows()
    )
    assert verdict["p_order_next_90d_model_published"] == 1.0
    assert verdict["p_order_next_90d_brier_score_margin_ci_low"] > 0
    assert verdict["expected_next_order_date_model_published"] == 1.0
    assert published_sources(metrics) == {
        "p_order_next_30d": "model",
        "p_order_next_90d": "model",
        "expected_next_order_date": "model",
    }
    # swap the roles: the "model" is the noise now, and the naive rules win or tie
    metrics = score_next_order(
        {k: naive_p[int(k[13:-1])]["rate_rule"] for k in model_p},
        {
            h: {"rate_rule": model_p[f"p_order_next_{h}d"], "recent_share": np.full(n, 0.5)}
            for h in (30, 90)
        },
        naive_days,
        model_days,
        next_days,
        window_days=90,
        resamples=50,
    )
    assert published_sources(metrics) == {
        "p_order_next_30d": "rate_rule",
        "p_order_next_90d": "rate_rule",
        "expected_next_order_date": "naive_rule",
    }
    lines = describe_next_order_verdict(metrics)
    assert len(lines) == 3
    assert any("p_order_next_90d" in line and "(rate_rule)" in line for line in lines)
    # a horizon longer than the window is not scored
    metrics = score_next_order(
        {"p_order_next_120d": model_p["p_order_next_90d"]},
        {120: naive_p[90]},
        model_days,
        naive_days,
        next_days,
        window_days=90,
        resamples=10,
    )
    assert "p_order_next_120d" not in published_sources(metrics)


def _two_customers() -> pl.DataFrame:
    """A repeat buyer (a) and a one-time buyer (b), in days, as of 2024-01-25."""
    return pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "frequency": [2, 0],
            "recency": [20.0, 0.0],
            "T": [24.0, 20.0],
            "last_purchase_at": [datetime(2024, 1, 21), datetime(2024, 1, 5)],
        }
    )


def test_naive_values_replace_the_columns_the_model_lost():
    as_of = date(2024, 1, 25)
    summary = _two_customers()
    predictions = pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "p_order_next_30d": [0.9, 0.2],
            "p_order_next_90d": [0.95, 0.4],
            "expected_next_order_date": [date(2024, 3, 1), date(2024, 4, 1)],
        }
    )
    out = _publish_naive_where_model_loses(
        predictions,
        summary,
        {
            "p_order_next_30d": "recent_share",
            "p_order_next_90d": "model",
            "expected_next_order_date": "naive_rule",
        },
        as_of,
        1,
    )
    # recent share over customers observed >= 30 days: none, so 0
    assert out["p_order_next_30d"].to_list() == [0.0, 0.0]
    assert out["p_order_next_90d"].to_list() == [0.95, 0.4]
    naive = predict_naive_next_order_dates(summary, as_of=as_of)["naive_next_order_date"]
    assert out["expected_next_order_date"].to_list() == naive.to_list() == [date(2024, 1, 31), None]


# --------------------------------------------------------------------------- CDNOW master target


@pytest.mark.parametrize("cutoff", [date(1998, 3, 31), date(1997, 12, 31)])
def test_cdnow_master_next_order_beats_its_naive_rules(cutoff):
    """Issue 14 targets: as of 1998-03-31 with H = 90 days, p_order_next_90d has a lower Brier
    score than the naive rules and the next order date ranks the real next orders at
    Harrell's C >= 0.70; the verdict publishes the model's values. Predicting from 1998-03-31
    the next 90 days (to the file's end) is the target; 1997-12-31 is the holdout a run as of
    1998-03-31 makes (holdout_days = 90)."""
    window = 90
    con = duckdb.connect()
    try:
        load_cdnow(con, DATASETS / "CDNOW_master.txt", ["customer_id", "date", "cds", "amount"])
        con.execute(
            HOLDOUT_SQL,
            {
                "calibration_end": cutoff,
                "as_of": cutoff + timedelta(days=window),
                "unit_days": 1,
                "period_days": 1,
                "resolution": "periods",
            },
        )
        holdout = con.sql("select * from models.clv_holdout order by customer_id").pl()
    finally:
        con.close()
    # CDNOW's 23,570 customers all bought before 1997-04; a few orders are $0 (not purchases)
    assert 23_400 < holdout.height <= 23_570
    summary = holdout.select(
        "customer_id",
        pl.col("frequency_cal").alias("frequency"),
        pl.col("recency_cal").alias("recency"),
        pl.col("T_cal").alias("T"),
        pl.col("last_purchase_at_cal").alias("last_purchase_at"),
    )
    model = BetaGeoModel().fit(summary)

    def days_after_cutoff(frame: pl.DataFrame, column: str) -> np.ndarray:
        days = (pl.col(column) - pl.lit(cutoff)).dt.total_days().cast(pl.Float64)
        return frame.select(days.fill_null(np.nan)).to_series().to_numpy()

    next_days = days_after_cutoff(holdout, "first_holdout_order_date")
    naive_days = days_after_cutoff(
        predict_naive_next_order_dates(summary, as_of=cutoff), "naive_next_order_date"
    )
    metrics = score_next_order(
        predict_order_probabilities(model, summary, (90,)),
        {90: naive_order_probabilities(summary, horizon_days=90)},
        predict_next_order_offsets(model, summary),
        naive_days,
        next_days,
        window_days=window,
        resamples=50,
    )
    cells = {(m, k): (v, b) for m, k, v, b in metrics.rows()}
    for rule in ("rate_rule", "recent_share"):
        model_brier, naive_brier = cells[(f"p_order_next_90d_vs_{rule}", "brier_score")]
        assert model_brier < naive_brier, rule
    c_model, c_naive = cells[("next_order_date", "harrell_c")]
    print("CDNOW next order", cells)
    assert c_model >= 0.70 and c_model > c_naive
    assert published_sources(metrics) == {
        "p_order_next_90d": "model",
        "expected_next_order_date": "model",
    }


def test_the_run_summary_says_which_next_order_values_are_published():
    metrics = pl.DataFrame(
        [
            ("next_order_date", "mae_days", 30.0, 40.0),
            ("next_order_date", "harrell_c", 0.75, 0.69),
            ("next_order_verdict", "p_order_next_30d_brier_score", 0.06, 0.05),
            ("next_order_verdict", "p_order_next_30d_brier_score_margin", -0.01, None),
            ("next_order_verdict", "p_order_next_30d_brier_score_margin_ci_low", -0.02, None),
            ("next_order_verdict", "p_order_next_30d_brier_score_margin_ci_high", 0.0, None),
            ("next_order_verdict", "p_order_next_30d_brier_score_significant", 0.0, None),
            ("next_order_verdict", "p_order_next_30d_naive_rule", 1.0, None),
            ("next_order_verdict", "p_order_next_30d_model_published", 0.0, None),
        ],
        schema=["model", "metric", "value", "baseline"],
        orient="row",
    )
    report = ValueReport(
        resolution="periods",
        customers=10,
        repeat_buyers=5,
        clv_status="fitted",
        clv_message=None,
        metrics=metrics,
    )
    text = format_value_summary(report, {})
    assert "next-order date Harrell's C" in text and "0.750" in text
    assert (
        "  Next order, p_order_next_30d: brier_score 0.06 vs 0.05, margin -0.01 (95% -0.02 to "
        "+0, significant no); published the naive rule's values (recent_share)." in text
    )


def _settings(tmp_path, **models):
    data = {
        "sources": {
            "transactions": {
                "path": "t.csv",
                "format": "csv",
                "columns": {"customer_id": "id", "order_ts": "ts", "amount": "amount"},
            }
        },
        "models": models,
    }
    return settings_from_dict(data, base_dir=tmp_path)


def test_written_predictions_follow_this_runs_verdict(tmp_path):
    # the model lost p_order_next_90d to the rate rule in this run's holdout, won the rest;
    # an older run's verdict must not matter
    as_of = date(2024, 1, 25)
    summary = _two_customers()
    predictions = pl.DataFrame(
        {
            "customer_id": ["a", "b"],
            "p_order_next_30d": [0.9, 0.2],
            "p_order_next_90d": [0.95, 0.4],
            "expected_next_order_date": [date(2024, 3, 1), None],
        }
    )
    con = duckdb.connect()
    try:
        ensure_bookkeeping_tables(con)
        con.executemany(
            "insert into models.model_metrics values (?, 'next_order_verdict', ?, ?, null)",
            [
                ("run-1", "p_order_next_30d_model_published", 1.0),
                ("run-1", "p_order_next_90d_model_published", 0.0),
                ("run-1", "p_order_next_90d_naive_rule", 0.0),
                ("run-1", "expected_next_order_date_model_published", 1.0),
                ("run-0", "p_order_next_30d_model_published", 0.0),
                ("run-0", "p_order_next_30d_naive_rule", 1.0),
            ],
        )
        _write_predictions(con, _settings(tmp_path), predictions, summary, as_of, "run-1")
        out = con.sql("select * from models.clv_predictions order by customer_id").pl()
    finally:
        con.close()
    rate = [1 - np.exp(-2 / 24 * 90), 0.0]
    assert out["p_order_next_30d"].to_list() == [0.9, 0.2]
    np.testing.assert_allclose(out["p_order_next_90d"].to_numpy(), rate)
    assert out["expected_next_order_date"].to_list() == [date(2024, 3, 1), None]


def test_order_probability_horizons_come_from_the_config(tmp_path):
    assert _settings(tmp_path).models.order_probability_horizons_days == (30, 90)
    settings = _settings(tmp_path, order_probability_horizons_days=[60, 7, 60])
    assert settings.models.order_probability_horizons_days == (7, 60)
    with pytest.raises(ConfigError, match="models.order_probability_horizons_days"):
        _settings(tmp_path, order_probability_horizons_days=[0])


def test_the_subsampled_bootstrap_of_c_is_as_wide_as_the_full_one(monkeypatch):
    # m-out-of-n resamples scaled by sqrt(m / n) must give the interval full resamples give
    from models.clv import next_order

    rng = np.random.default_rng(8)
    n = 10_000
    rate = rng.gamma(1.0, 1 / 60, n)
    wait = rng.exponential(1 / rate)
    event = wait <= 90
    time = np.where(event, np.ceil(wait), 90.5)
    model_days = np.ceil(np.log(2) / rate * rng.lognormal(0, 1.0, n))
    naive_days = np.ceil(np.log(2) / rate * rng.lognormal(0, 1.5, n))

    def width(max_customers):
        monkeypatch.setattr(next_order, "BOOTSTRAP_MAX_CUSTOMERS", max_customers)
        low, high = next_order._bootstrap_c_interval(
            model_days, naive_days, time, event, resamples=400, seed=1
        )
        return low, high

    full_low, full_high = width(n)
    sub_low, sub_high = width(1_000)
    difference = harrell_c(model_days, time, event) - harrell_c(naive_days, time, event)
    assert full_low < difference < full_high and sub_low < difference < sub_high
    assert (sub_high - sub_low) == pytest.approx(full_high - full_low, rel=0.25)
