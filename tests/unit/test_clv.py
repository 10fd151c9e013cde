"""Tests for sql/models/clv_summary.sql, sql/models/clv_holdout.sql and the models/clv/ package."""

from __future__ import annotations

import inspect
import os
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from models.clv import (
    BetaGeoModel,
    GammaGammaModel,
    ModelFitError,
    beta_geo,
    check_enough_data,
    choose_resolution,
    compress_summary,
    detect_time_of_day,
    discounted_expected_purchases,
    evaluate_holdout,
    fitting,
    likelihood,
    predict,
    predict_customer_value,
    predict_naive_next_order_dates,
    score_next_order_dates,
)
from tests.helpers import load_core_transactions

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import lifetimes
    from lifetimes.utils import (
        calibration_and_holdout_data,
        summary_data_from_transaction_data,
    )

ROOT = Path(__file__).resolve().parents[2]
SUMMARY_SQL = (ROOT / "sql/models/clv_summary.sql").read_text()
HOLDOUT_SQL = (ROOT / "sql/models/clv_holdout.sql").read_text()
DATASETS = Path(os.path.dirname(lifetimes.__file__)) / "datasets"


# core.transactions as documented in docs/core_tables.md
def load_cdnow(con, path: Path, columns: list[str], *, zero_amount_is_purchase: bool = False):
    """A whitespace-aligned CDNOW file -> core.transactions (dates only, all completed)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if lines[0][0] == "customer_id":
        lines = lines[1:]
    raw = pl.DataFrame(lines, schema=columns, orient="row")
    con.execute("create schema if not exists core; create schema if not exists models")
    con.register("raw_cdnow", raw.to_arrow())
    completed = "true" if zero_amount_is_purchase else "amount::double > 0"
    con.execute(
        f"""
        create or replace table core.transactions as
        select
            customer_id,
            customer_id || '-' || row_number() over (partition by customer_id order by date) as order_id,
            strptime(date, '%Y%m%d') as order_at,
            strptime(date, '%Y%m%d')::date as order_date,
            amount::double as amount,
            cds::double as quantity,
            'completed' as status,
            {completed} as is_completed_order,
            null::varchar as currency, null::varchar as channel, null::varchar as payment_method,
            1 as line_count
        from raw_cdnow
        """
    )
    con.unregister("raw_cdnow")


def build_summary(con, as_of, *, unit_days=1, period_days=1, resolution="periods") -> pl.DataFrame:
    con.execute(
        SUMMARY_SQL,
        {"as_of": as_of, "unit_days": unit_days, "period_days": period_days, "resolution": "both"},
    )
    return con.sql(
        f"select * from models.clv_summary where resolution = '{resolution}' order by customer_id"
    ).pl()


def lifetimes_summary(con, as_of, freq, freq_multiplier=1) -> pd.DataFrame:
    # lifetimes gets the same rows our SQL reads: completed orders up to as_of
    transactions = con.sql(
        "select customer_id, order_at, amount from core.transactions "
        "where is_completed_order and order_date <= $as_of",
        params={"as_of": as_of},
    ).df()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return summary_data_from_transaction_data(
            transactions,
            "customer_id",
            "order_at",
            "amount",
            observation_period_end=pd.Timestamp(as_of),
            freq=freq,
            freq_multiplier=freq_multiplier,
        ).sort_index()


def assert_same_as_lifetimes(ours: pl.DataFrame, theirs: pd.DataFrame) -> None:
    assert ours.get_column("customer_id").to_list() == theirs.index.to_list()
    for column in ("frequency", "recency", "T"):
        assert np.array_equal(
            ours.get_column(column).to_numpy().astype(float), theirs[column].to_numpy()
        ), column
    np.testing.assert_allclose(
        ours.get_column("monetary_value").to_numpy(),
        theirs["monetary_value"].to_numpy(),
        rtol=1e-12,
    )


def three_significant_figures(x: float) -> str:
    return f"{x:.3g}"


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def cdnow_master():
    connection = duckdb.connect()
    load_cdnow(connection, DATASETS / "CDNOW_master.txt", ["customer_id", "date", "cds", "amount"])
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def cdnow_sample():
    """Fader-Hardie-Lee's 2,357-customer sample; the 8 zero-dollar orders count as purchases, as in their data."""
    connection = duckdb.connect()
    load_cdnow(
        connection,
        DATASETS / "CDNOW_sample.txt",
        ["master_id", "customer_id", "date", "cds", "amount"],
        zero_amount_is_purchase=True,
    )
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def sample_summary(cdnow_sample):
    return build_summary(cdnow_sample, date(1997, 9, 30), unit_days=7, period_days=1)


@pytest.fixture(scope="module")
def sample_models(sample_summary):
    return BetaGeoModel(unit_days=7).fit(sample_summary), GammaGammaModel().fit(sample_summary)


# --------------------------------------------------------------------------- SQL: hand-made rows

AS_OF = date(2024, 1, 31)  # a Wednesday; its ISO week starts Monday 2024-01-29
HAND_ROWS = [
    ("A", "2024-01-01 10:00", 10.0),
    ("A", "2024-01-01 15:00", 20.0),  # same day as the first
    ("A", "2024-01-11 09:00", 30.0),
    ("A", "2024-01-20 12:00", 50.0, "cancelled"),
    ("A", "2024-02-05 12:00", 99.0),  # after as_of
    ("B", "2024-01-31 23:00", 5.0),  # on as_of
    ("C", "2024-01-05 12:00", -15.0, "returned"),  # no completed order
    ("Z", "2024-01-05 12:00", 0.0),  # zero amount: not a purchase
    ("D", "2024-01-07 12:00", 12.0),  # Sunday
    ("D", "2024-01-08 12:00", 18.0),  # Monday: another ISO week
    ("E", "2024-01-09 12:00", 40.0),  # Tuesday
    ("E", "2024-01-12 12:00", 60.0),  # Friday of the same week
]


def rows_by_customer(frame: pl.DataFrame) -> dict[str, tuple]:
    return {
        row["customer_id"]: (row["frequency"], row["recency"], row["T"], row["monetary_value"])
        for row in frame.iter_rows(named=True)
    }


def test_period_summary_counts_same_day_orders_once_and_sums_their_amounts(con):
    load_core_transactions(con, HAND_ROWS)
    summary = rows_by_customer(build_summary(con, AS_OF))
    assert summary == {
        "A": (1, 10.0, 30.0, 30.0),  # days 01-01 (10 + 20) and 01-11 (30)
        "B": (0, 0.0, 0.0, 0.0),
        "D": (1, 1.0, 24.0, 18.0),
        "E": (1, 3.0, 22.0, 60.0),
    }


def test_weekly_period_summary_uses_iso_weeks_and_whole_weeks(con):
    load_core_transactions(con, HAND_ROWS)
    summary = rows_by_customer(build_summary(con, AS_OF, unit_days=7, period_days=7))
    assert summary == {
        "A": (1, 1.0, 4.0, 30.0),  # weeks of 01-01 and 01-08; T from 01-01 to 01-29
        "B": (0, 0.0, 0.0, 0.0),
        "D": (1, 1.0, 4.0, 18.0),  # Sunday and Monday are different weeks
        "E": (0, 0.0, 3.0, 0.0),  # Tuesday and Friday: one week
    }


def test_exact_summary_counts_every_order_with_fractional_days_to_the_end_of_as_of(con):
    load_core_transactions(con, HAND_ROWS)
    summary = rows_by_customer(build_summary(con, AS_OF, resolution="exact"))
    frequency, recency, age, monetary = summary["A"]
    assert frequency == 2
    assert recency == pytest.approx(9 + 23 / 24)  # 01-01 10:00 -> 01-11 09:00
    assert age == pytest.approx(30 + 14 / 24)  # 01-01 10:00 -> 02-01 00:00
    assert monetary == pytest.approx(25.0)  # mean of the repeat orders 20 and 30
    assert summary["B"] == pytest.approx((0, 0.0, 1 / 24, 0.0))
    assert set(summary) == {"A", "B", "D", "E"}
    weekly = rows_by_customer(build_summary(con, AS_OF, unit_days=7, resolution="exact"))
    assert weekly["A"][2] == pytest.approx((30 + 14 / 24) / 7)


def test_clv_summary_has_one_row_per_customer_and_resolution_with_purchase_timestamps(con):
    load_core_transactions(con, HAND_ROWS)
    con.execute(
        SUMMARY_SQL, {"as_of": AS_OF, "unit_days": 1, "period_days": 1, "resolution": "both"}
    )
    frame = con.sql("select * from models.clv_summary order by resolution, customer_id").pl()
    assert frame.columns == [
        "resolution",
        "customer_id",
        "frequency",
        "recency",
        "T",
        "monetary_value",
        "first_purchase_at",
        "last_purchase_at",
    ]
    assert frame.group_by("resolution", "customer_id").len().get_column("len").max() == 1
    a = frame.filter((pl.col("customer_id") == "A") & (pl.col("resolution") == "periods")).row(
        0, named=True
    )
    assert a["first_purchase_at"] == datetime(2024, 1, 1, 10)
    assert a["last_purchase_at"] == datetime(2024, 1, 11, 9)


def test_hand_made_summary_equals_lifetimes_for_days_and_weeks(con):
    load_core_transactions(con, HAND_ROWS)
    assert_same_as_lifetimes(build_summary(con, AS_OF), lifetimes_summary(con, AS_OF, "D"))
    assert_same_as_lifetimes(
        build_summary(con, AS_OF, unit_days=7, period_days=7), lifetimes_summary(con, AS_OF, "W")
    )


def test_clv_summary_rejects_units_other_than_days_and_weeks(con):
    load_core_transactions(con, HAND_ROWS)
    with pytest.raises(duckdb.Error, match="unit_days must be 1 or 7"):
        con.execute(
            SUMMARY_SQL, {"as_of": AS_OF, "unit_days": 30, "period_days": 1, "resolution": "both"}
        )


# --------------------------------------------------------------------------- SQL: CDNOW golden checks


@pytest.mark.parametrize(
    ("as_of", "unit_days", "period_days", "freq", "freq_multiplier"),
    [
        (date(1998, 6, 30), 1, 1, "D", 1),
        (date(1998, 6, 30), 7, 7, "W", 1),
        (date(1997, 9, 24), 7, 7, "W", 1),  # mid-week as-of: the partial week
        (date(1997, 9, 30), 7, 1, "D", 7),  # Fader-Hardie's CDNOW summary form
    ],
)
def test_period_summary_equals_lifetimes_on_cdnow_master(
    cdnow_master, as_of, unit_days, period_days, freq, freq_multiplier
):
    ours = build_summary(cdnow_master, as_of, unit_days=unit_days, period_days=period_days)
    assert ours.height > 23_000
    assert_same_as_lifetimes(ours, lifetimes_summary(cdnow_master, as_of, freq, freq_multiplier))


def test_cdnow_sample_summary_reproduces_fader_hardie_summary_file(sample_summary):
    published = pd.read_csv(DATASETS / "cdnow_customers_summary_with_transactions.csv")
    assert sample_summary.height == len(published) == 2357
    ours = sample_summary.sort(pl.col("customer_id").cast(pl.Int64))
    assert ours.get_column("frequency").to_list() == published["x"].tolist()
    for column, theirs in (("recency", "t_x"), ("T", "T"), ("monetary_value", "zbar")):
        np.testing.assert_allclose(
            ours.get_column(column).to_numpy(), published[theirs], atol=0.005 + 1e-9
        )


@pytest.mark.parametrize(
    ("unit_days", "period_days", "freq", "freq_multiplier"), [(1, 1, "D", 1), (7, 7, "W", 1)]
)
def test_holdout_sql_equals_lifetimes_calibration_and_holdout_data(
    cdnow_master, unit_days, period_days, freq, freq_multiplier
):
    calibration_end, as_of = date(1997, 9, 30), date(1998, 6, 30)  # 09-30 is a Tuesday
    cdnow_master.execute(
        HOLDOUT_SQL,
        {
            "calibration_end": calibration_end,
            "as_of": as_of,
            "unit_days": unit_days,
            "period_days": period_days,
            "resolution": "both",
        },
    )
    ours = cdnow_master.sql(
        "select * from models.clv_holdout where resolution = 'periods' order by customer_id"
    ).pl()
    transactions = cdnow_master.sql(
        "select customer_id, order_at, amount from core.transactions where is_completed_order"
    ).df()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = calibration_and_holdout_data(
            transactions,
            "customer_id",
            "order_at",
            calibration_period_end=pd.Timestamp(calibration_end),
            observation_period_end=pd.Timestamp(as_of),
            freq=freq,
            freq_multiplier=freq_multiplier,
            monetary_value_col="amount",
        ).sort_index()
    assert ours.get_column("customer_id").to_list() == theirs.index.to_list()
    for column in (
        "frequency_cal",
        "recency_cal",
        "T_cal",
        "frequency_holdout",
        "duration_holdout",
    ):
        assert np.array_equal(
            ours.get_column(column).to_numpy().astype(float), theirs[column].to_numpy()
        ), column
    # the calibration columns are exactly models.clv_summary at calibration_end
    summary = build_summary(
        cdnow_master, calibration_end, unit_days=unit_days, period_days=period_days
    )
    assert (
        ours.select("frequency_cal", "recency_cal", "T_cal", "monetary_value_cal").rows()
        == summary.select("frequency", "recency", "T", "monetary_value").rows()
    )


def test_holdout_sql_on_hand_made_rows(con):
    load_core_transactions(con, HAND_ROWS)
    con.execute(
        HOLDOUT_SQL,
        {
            "calibration_end": date(2024, 1, 10),
            "as_of": AS_OF,
            "unit_days": 1,
            "period_days": 1,
            "resolution": "both",
        },
    )
    frame = con.sql("select * from models.clv_holdout order by resolution, customer_id").pl()
    rows = {(r["resolution"], r["customer_id"]): r for r in frame.iter_rows(named=True)}
    # B and the second half of E's history start after calibration_end; B is not in the cohort
    assert sorted(k[1] for k in rows if k[0] == "periods") == ["A", "D", "E"]
    assert rows[("periods", "A")]["frequency_cal"] == 0  # one day with two orders
    assert rows[("exact", "A")]["frequency_cal"] == 1
    assert rows[("periods", "A")]["frequency_holdout"] == 1  # 01-11; 02-05 is after as_of
    assert rows[("periods", "E")]["frequency_holdout"] == 1
    assert rows[("periods", "D")]["frequency_holdout"] == 0
    assert {r["duration_holdout"] for r in frame.iter_rows(named=True)} == {21.0}


def test_holdout_sql_carries_the_last_order_before_and_the_first_order_in_the_window(con):
    load_core_transactions(con, HAND_ROWS)
    con.execute(
        HOLDOUT_SQL,
        {
            "calibration_end": date(2024, 1, 10),
            "as_of": AS_OF,
            "unit_days": 7,
            "period_days": 7,
            "resolution": "both",
        },
    )
    rows = {
        (r[0], r[1]): r[2:]
        for r in con.execute(
            "select resolution, customer_id, last_purchase_at_cal, first_holdout_order_date from models.clv_holdout"
        ).fetchall()
    }
    for resolution in ("periods", "exact"):
        assert rows[(resolution, "A")] == (datetime(2024, 1, 1, 15), date(2024, 1, 11))
        assert rows[(resolution, "E")] == (datetime(2024, 1, 9, 12), date(2024, 1, 12))
        assert rows[(resolution, "D")] == (datetime(2024, 1, 8, 12), None)
    # a week straddling calibration_end (E: Tue 01-09 and Fri 01-12) is a purchase in both windows
    assert con.execute(
        "select frequency_cal, frequency_holdout from models.clv_holdout "
        "where resolution = 'periods' and customer_id = 'E'"
    ).fetchall() == [(0, 1)]


def test_holdout_metrics_of_a_fitted_model_equal_those_of_a_refit(cdnow_sample):
    cdnow_sample.execute(
        HOLDOUT_SQL,
        {
            "calibration_end": date(1997, 9, 30),
            "as_of": date(1998, 6, 30),
            "unit_days": 7,
            "period_days": 1,
            "resolution": "both",
        },
    )
    holdout = cdnow_sample.sql("select * from models.clv_holdout where resolution = 'periods'").pl()
    calibration = holdout.select(frequency="frequency_cal", recency="recency_cal", T="T_cal")
    fitted = BetaGeoModel(unit_days=7).fit(calibration)
    refit = evaluate_holdout(holdout, model=BetaGeoModel(unit_days=7))
    assert evaluate_holdout(holdout, model=fitted, refit=False).equals(refit)
    with pytest.raises(NotFittedError):
        evaluate_holdout(holdout, model=BetaGeoModel(unit_days=7), refit=False)


def test_summary_and_holdout_sql_build_only_the_resolution_asked_for(con):
    load_core_transactions(con, HAND_ROWS)
    params = {
        "as_of": AS_OF,
        "calibration_end": date(2024, 1, 10),
        "unit_days": 1,
        "period_days": 1,
        "resolution": "both",
    }
    queries = {
        SUMMARY_SQL: "select * from models.clv_summary order by all",
        HOLDOUT_SQL: "select * from models.clv_holdout order by all",
    }

    def build(resolution: str):
        out = {}
        for sql, query in queries.items():
            given = {**params, "resolution": resolution}
            con.execute(sql, {k: v for k, v in given.items() if f"${k}" in sql})
            out[sql] = con.execute(query).fetchall()
        return out

    both = build("both")
    for resolution in ("periods", "exact"):
        one = build(resolution)
        for sql in queries:
            assert one[sql] == [row for row in both[sql] if row[0] == resolution]
            assert one[sql]
    assert {row[0] for rows in both.values() for row in rows} == {"periods", "exact"}


# --------------------------------------------------------------------------- published estimates


def test_bgnbd_reproduces_fader_hardie_lee_estimates_from_our_sql_summary(sample_models):
    bgnbd, _ = sample_models
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert three_significant_figures(bgnbd.params_[name]) == three_significant_figures(value), (
            name
        )
    assert bgnbd.penalizer_ == 0.0


def test_gamma_gamma_reproduces_published_estimates_from_our_sql_summary(sample_models):
    _, gamma_gamma = sample_models
    published = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in published.items():
        assert three_significant_figures(gamma_gamma.params_[name]) == three_significant_figures(
            value
        ), name
    assert gamma_gamma.n_customers_ == 946


def test_zero_dollar_orders_excluded_by_the_core_contract_move_estimates_less_than_one_percent():
    # core.transactions counts only amount > 0 as a purchase: 8 sample customers whose only
    # order was $0 disappear, and r, alpha, b no longer match the published figures to 3 s.f.
    connection = duckdb.connect()
    load_cdnow(
        connection,
        DATASETS / "CDNOW_sample.txt",
        ["master_id", "customer_id", "date", "cds", "amount"],
    )
    summary = build_summary(connection, date(1997, 9, 30), unit_days=7)
    assert summary.height == 2349
    params = BetaGeoModel(unit_days=7).fit(summary).params_
    for name, value in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert params[name] == pytest.approx(value, rel=0.01), name


# --------------------------------------------------------------------------- fitting


def test_compressed_fit_gives_the_same_parameters_as_the_uncompressed_fit(
    sample_summary, sample_models
):
    bgnbd, gamma_gamma = sample_models
    uncompressed = BetaGeoModel(unit_days=7, compress=False).fit(sample_summary)
    assert bgnbd.n_patterns_ < uncompressed.n_patterns_ == 2357
    for name in ("r", "alpha", "a", "b"):
        assert bgnbd.params_[name] == pytest.approx(uncompressed.params_[name], rel=1e-5)
        assert bgnbd.std_errors_[name] == pytest.approx(uncompressed.std_errors_[name], rel=1e-3)
    gg_uncompressed = GammaGammaModel(compress=False).fit(sample_summary)
    for name in ("p", "q", "gamma"):
        assert gamma_gamma.params_[name] == pytest.approx(gg_uncompressed.params_[name], rel=1e-5)


def test_compress_summary_counts_customers_per_pattern():
    summary = pl.DataFrame(
        {"frequency": [0, 0, 1, 1, 1], "recency": [0.0, 0.0, 2.0, 2.0, 3.0], "T": [5.0] * 5}
    )
    compressed = compress_summary(summary)
    assert compressed.rows() == [(0, 0.0, 5.0, 2), (1, 2.0, 5.0, 2), (1, 3.0, 5.0, 1)]


def test_models_follow_scikit_learn_conventions(sample_summary):
    model = BetaGeoModel(unit_days=7, penalizers=(0.0, 0.01))
    assert model.get_params() == {
        "unit_days": 7,
        "penalizers": (0.0, 0.01),
        "max_parameter": 1e6,
        "compress": True,
        "tol": 1e-7,
    }
    for call in (
        lambda: model.predict(sample_summary, horizon_days=30),
        lambda: model.predict_p_alive(sample_summary),
        lambda: model.parameters_frame(),
        lambda: GammaGammaModel().predict(sample_summary),
    ):
        with pytest.raises(NotFittedError):
            call()
    assert model.fit(sample_summary) is model
    assert model.penalizers == (0.0, 0.01)


def test_parameters_frame_is_tidy_with_standard_errors_and_the_penalizer(sample_models):
    bgnbd, gamma_gamma = sample_models
    frame = pl.concat([bgnbd.parameters_frame(), gamma_gamma.parameters_frame()])
    assert frame.columns == ["model", "parameter", "value", "std_error"]
    assert frame.select("model", "parameter").rows() == [
        ("bgnbd", "r"),
        ("bgnbd", "alpha"),
        ("bgnbd", "a"),
        ("bgnbd", "b"),
        ("bgnbd", "penalizer"),
        ("gamma_gamma", "p"),
        ("gamma_gamma", "q"),
        ("gamma_gamma", "gamma"),
        ("gamma_gamma", "penalizer"),
    ]
    r = frame.row(0, named=True)
    assert r["std_error"] == pytest.approx(0.0126, abs=1e-4)  # lifetimes' summary for the FHL fit
    assert (
        frame.filter(pl.col("parameter") == "penalizer").get_column("std_error").null_count() == 2
    )


def test_gamma_gamma_metrics_report_the_frequency_spend_correlation(sample_summary, sample_models):
    _, gamma_gamma = sample_models
    buyers = sample_summary.filter(pl.col("frequency") > 0)
    expected = np.corrcoef(buyers.get_column("frequency"), buyers.get_column("monetary_value"))[
        0, 1
    ]
    metrics = dict(gamma_gamma.metrics_frame().select("metric", "value").rows())
    assert metrics["frequency_monetary_correlation"] == pytest.approx(expected)
    assert metrics["repeat_buyers"] == 946


def test_closed_form_likelihoods_equal_lifetimes_autograd_value_gradient_and_hessian(
    sample_summary,
):
    # the fitters minimise our closed-form likelihoods; lifetimes differentiates its own with autograd
    from autograd import hessian, value_and_grad

    data = compress_summary(sample_summary)
    scale = 1 / data["T"].max()
    bg_args = (
        data["frequency"].to_numpy(),
        data["recency"].to_numpy() * scale,
        data["T"].to_numpy() * scale,
        data["weights"].to_numpy().astype(float),
        0.001,
    )
    buyers = sample_summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
    spend = compress_summary(buyers, ("frequency", "monetary_value"))
    gg_args = (
        spend["frequency"].to_numpy().astype(float),
        spend["monetary_value"].to_numpy(),
        spend["weights"].to_numpy().astype(float),
        0.001,
    )
    cases = [
        (
            likelihood._BetaGeoLikelihood(*bg_args),
            lifetimes.BetaGeoFitter._negative_log_likelihood,
            bg_args,
            4,
        ),
        (
            likelihood._GammaGammaLikelihood(*gg_args),
            lifetimes.GammaGammaFitter._negative_log_likelihood,
            gg_args,
            3,
        ),
    ]
    rng = np.random.default_rng(5)
    for ours, theirs, args, size in cases:
        for log_params in (np.full(size, 0.1), rng.normal(0, 1, size), rng.normal(0, 2, size)):
            value, gradient, hess = ours(log_params, hessian=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                their_value, their_gradient = value_and_grad(theirs)(log_params, *args)
                their_hessian = hessian(theirs)(log_params, *args)
            assert value == pytest.approx(their_value, rel=1e-12)
            np.testing.assert_allclose(
                gradient, their_gradient, rtol=1e-9, atol=1e-12 * np.abs(their_gradient).max()
            )
            np.testing.assert_allclose(
                hess, their_hessian, rtol=1e-9, atol=1e-12 * np.abs(their_hessian).max()
            )
            assert ours(log_params)[0] == value


def test_fits_equal_lifetimes_own_fitters(sample_summary, sample_models):
    bgnbd, gamma_gamma = sample_models
    frequency, recency, age = (
        sample_summary[c].to_numpy().astype(float) for c in ("frequency", "recency", "T")
    )
    buyers = sample_summary.filter(pl.col("frequency") > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = lifetimes.BetaGeoFitter().fit(frequency, recency, age)
        their_gg = lifetimes.GammaGammaFitter().fit(
            buyers["frequency"].to_numpy(), buyers["monetary_value"].to_numpy()
        )
    for name, value in theirs.params_.items():
        assert bgnbd.params_[name] == pytest.approx(value, rel=1e-6), name
        assert bgnbd.std_errors_[name] == pytest.approx(theirs.standard_errors_[name], rel=1e-4), (
            name
        )
    for name, value in their_gg.params_.items():
        ours = gamma_gamma.params_["gamma" if name == "v" else name]
        assert ours == pytest.approx(value, rel=1e-6), name


def _small_fitter_inputs(sample_summary):
    # 300 CDNOW customers (97 repeat buyers): small enough for lifetimes' autograd fits
    small = sample_summary.head(300)
    buyers = small.filter(pl.col("frequency") > 0)
    return (
        tuple(small[c].to_numpy().astype(float) for c in ("frequency", "recency", "T")),
        (buyers["frequency"].to_numpy().astype(float), buyers["monetary_value"].to_numpy()),
    )


def test_fitter_subclasses_fit_what_plain_lifetimes_fits(sample_summary):
    bg_inputs, gg_inputs = _small_fitter_inputs(sample_summary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = [
            (likelihood.BetaGeoFitter().fit(*bg_inputs), lifetimes.BetaGeoFitter().fit(*bg_inputs)),
            (
                likelihood.GammaGammaFitter().fit(*gg_inputs),
                lifetimes.GammaGammaFitter().fit(*gg_inputs),
            ),
        ]
    for ours, theirs in pairs:
        assert list(ours.params_.index) == list(theirs.params_.index)
        for name, value in theirs.params_.items():
            assert ours.params_[name] == pytest.approx(value, rel=1e-6), name
            assert ours.standard_errors_[name] == pytest.approx(
                theirs.standard_errors_[name], rel=1e-4
            ), name
        assert ours.neg_log_likelihood_ == pytest.approx(theirs._negative_log_likelihood_, rel=1e-9)


def test_lifetimes_internals_the_fitter_subclasses_rely_on_are_there(monkeypatch, sample_summary):
    # models/clv/likelihood.py overrides lifetimes' private BaseFitter._fit hook (see the
    # subclasses' docstrings). If lifetimes is not 0.11.3 or the hook changed, fail here rather
    # than silently fitting with lifetimes' own objective or unpacking the wrong values.
    assert lifetimes.__version__ == "0.11.3"
    hook = lifetimes.fitters.BaseFitter._fit
    assert list(inspect.signature(hook).parameters) == [
        "self",
        "minimizing_function_args",
        "initial_params",
        "params_size",
        "disp",
        "tol",
        "bounds",
        "kwargs",
    ]
    objectives = {
        lifetimes.BetaGeoFitter: ["log_params", "freq", "rec", "T", "weights", "penalizer_coef"],
        lifetimes.GammaGammaFitter: [
            "log_params",
            "frequency",
            "avg_monetary_value",
            "weights",
            "penalizer_coef",
        ],
    }
    for parent, parameters in objectives.items():
        assert parent._fit is hook
        assert list(inspect.signature(parent._negative_log_likelihood).parameters) == parameters
    for ours in (likelihood.BetaGeoFitter, likelihood.GammaGammaFitter):
        assert inspect.signature(ours._fit) == inspect.signature(hook)
    # lifetimes' fit goes through the override and keeps what it returns, in that order
    returned = []
    real = likelihood._minimize_likelihood

    def recording(*args, **kwargs):
        returned.append(real(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(likelihood, "_minimize_likelihood", recording)
    bg_inputs, gg_inputs = _small_fitter_inputs(sample_summary)
    for fitter, inputs in (
        (likelihood.BetaGeoFitter(), bg_inputs),
        (likelihood.GammaGammaFitter(), gg_inputs),
    ):
        fitter.fit(*inputs)
        log_params, value, hess = returned[-1]
        assert fitter._negative_log_likelihood_ is value and fitter._hessian_ is hess
        assert fitter.neg_log_likelihood_ == value
        assert fitter.params_.iloc[0] == pytest.approx(np.exp(log_params[0]), rel=1e-15)
    assert len(returned) == 2


def test_an_optimiser_stop_short_of_the_optimum_is_finished_by_newton_steps_or_fails(
    monkeypatch, sample_summary
):
    # BFGS' line search can stop on rounding next to the optimum ("precision loss"); the fit
    # is then finished with Newton steps and accepted only where the gradient test holds
    reference = BetaGeoModel(unit_days=7).fit(sample_summary)
    real_minimize = likelihood.minimize

    def stops_early(*args, **kwargs):
        result = real_minimize(*args, **kwargs)
        result.x = result.x + 1e-3
        result.success, result.status, result.message = False, 2, "precision loss"
        return result

    monkeypatch.setattr(likelihood, "minimize", stops_early)
    finished = BetaGeoModel(unit_days=7).fit(sample_summary)
    assert finished.fit_attempts_ == ((0.0, None),)
    for name, value in reference.params_.items():
        assert finished.params_[name] == pytest.approx(value, rel=1e-6), name

    def stops_far_away(*args, **kwargs):
        result = real_minimize(*args, **kwargs)
        result.x = np.full_like(result.x, 30.0)
        result.success, result.status, result.message = False, 2, "precision loss"
        return result

    monkeypatch.setattr(likelihood, "minimize", stops_far_away)
    with pytest.raises(ModelFitError, match="could not be fitted with any penalizer"):
        BetaGeoModel(unit_days=7, penalizers=(0.0, 1e-3)).fit(sample_summary)


# --------------------------------------------------------------------------- penalizer ladder

NO_CHURN = pl.DataFrame(
    {"frequency": [10 + i % 3 for i in range(60)], "recency": [99.0] * 60, "T": [100.0] * 60}
)


def test_absurd_parameters_move_the_fit_down_the_penalizer_ladder(capsys):
    # nobody ever drops out: without a penalty r, alpha and b run off to ~1e8
    data = NO_CHURN.with_columns(weights=pl.lit(1.0))
    _, penalizer, attempts = fitting.fit_ladder(
        "BG/NBD",
        lambda p: likelihood.BetaGeoFitter(penalizer_coef=p),
        lambda fitter: fitter.fit(
            data["frequency"].to_numpy(), data["recency"].to_numpy(), data["T"].to_numpy()
        ),
        fitting.DEFAULT_PENALIZERS,
        fitting.DEFAULT_MAX_PARAMETER,
    )
    assert penalizer == 1e-4
    assert attempts[0][0] == 0.0
    # Which way the unpenalised fit fails depends on the processor's floating point: the
    # optimiser either stops without converging or returns the runaway values. Both must
    # move the fit to the next penalizer.
    reason = attempts[0][1]
    assert reason == "did not converge" or reason.startswith("gave absurd"), reason
    assert attempts[1] == (1e-4, None)
    assert capsys.readouterr().out == ""


def test_a_fit_without_identifiable_dropout_is_rejected_with_the_reason(capsys):
    # the penalised fit the ladder accepts has a ~ 5e-31: nobody ever drops out, so P(alive)
    # is 1 for everyone; before, it was published silently
    with pytest.raises(
        ModelFitError, match=r"BG/NBD fit was rejected: a=\S+ is at its lower bound"
    ):
        BetaGeoModel().fit(NO_CHURN)
    assert capsys.readouterr().out == ""


def test_convergence_errors_are_retried_and_recorded(monkeypatch, sample_summary):
    class FailsWithoutPenalty(likelihood.BetaGeoFitter):
        def fit(self, *args, **kwargs):
            if self.penalizer_coef == 0:
                raise likelihood.ConvergenceError("The model did not converge.")
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(beta_geo, "BetaGeoFitter", FailsWithoutPenalty)
    model = BetaGeoModel(unit_days=7, penalizers=(0.0, 1e-3)).fit(
        sample_summary
    )  # converges at 0 unpatched
    assert model.fit_attempts_ == ((0.0, "did not converge"), (1e-3, None))
    assert model.penalizer_ == 1e-3


def test_model_fit_error_when_every_penalizer_fails():
    with pytest.raises(
        ModelFitError, match=r"BG/NBD model could not be fitted with any penalizer \(0\)"
    ) as info:
        BetaGeoModel(penalizers=(0.0,)).fit(NO_CHURN)
    assert "\n" not in str(info.value)
    heavy_tailed = pl.DataFrame(
        {
            "frequency": [1 + i % 4 for i in range(200)],
            "monetary_value": (np.random.default_rng(0).pareto(0.7, 200) + 1) * 10,
        }
    )
    with pytest.raises(ModelFitError, match="Gamma-Gamma model could not be fitted"):
        GammaGammaModel().fit(heavy_tailed)
    with pytest.raises(ModelFitError, match="no customers"):
        BetaGeoModel().fit(NO_CHURN.head(0))
    assert (
        check_enough_data(NO_CHURN.head(0))
        == "No customer has a completed order up to the as-of date."
    )


# --------------------------------------------------------------------------- predictions


def test_discounted_purchases_match_a_hand_computed_constant_rate_case():
    rate, d = 0.02, 0.10  # purchases per day, annual discount rate

    def cumulative(days):
        return np.array([rate * days])

    v = 1.1 ** (-1 / 365)  # daily discount factor
    daily = discounted_expected_purchases(
        cumulative, horizon_days=365, step_days=1, annual_discount_rate=d
    )
    assert daily[0] == pytest.approx(rate * v * (1 - v**365) / (1 - v), rel=1e-12)
    weekly = discounted_expected_purchases(
        cumulative, horizon_days=365, step_days=7, annual_discount_rate=d
    )
    w = 1.1 ** (-7 / 365)  # 52 whole weeks, then one day discounted for the full year
    assert weekly[0] == pytest.approx(
        7 * rate * w * (1 - w**52) / (1 - w) + rate * 1 / 1.1, rel=1e-12
    )
    undiscounted = discounted_expected_purchases(
        cumulative, horizon_days=365, step_days=7, annual_discount_rate=0
    )
    assert undiscounted[0] == pytest.approx(rate * 365)


def test_clv_equals_lifetimes_formula_with_thirty_day_months(cdnow_sample):
    summary = build_summary(cdnow_sample, date(1997, 9, 30), unit_days=1)
    bgnbd, gamma_gamma = BetaGeoModel(unit_days=1).fit(summary), GammaGammaModel().fit(summary)
    monthly_rate = 0.01
    ours = discounted_expected_purchases(
        lambda days: bgnbd.predict(summary, horizon_days=days),
        horizon_days=360,
        step_days=30,
        annual_discount_rate=(1 + monthly_rate) ** (365 / 30) - 1,
    ) * gamma_gamma.predict(summary)
    frame = summary.to_pandas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = gamma_gamma.fitter_.customer_lifetime_value(
            bgnbd.fitter_,
            frame["frequency"],
            frame["recency"],
            frame["T"],
            frame["monetary_value"],
            time=12,
            discount_rate=monthly_rate,
            freq="D",
        )
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-9)


def test_predictions_keep_their_invariants(sample_summary, sample_models):
    bgnbd, gamma_gamma = sample_models
    as_of = date(1997, 9, 30)
    out = predict_customer_value(sample_summary, bgnbd=bgnbd, gamma_gamma=gamma_gamma, as_of=as_of)
    assert out.columns == [
        "customer_id",
        "p_alive",
        "expected_purchases_30d",
        "expected_purchases_90d",
        "expected_purchases_365d",
        "p_order_next_30d",
        "p_order_next_90d",
        "expected_order_value",
        "predicted_clv",
        "expected_next_order_date",
    ]
    assert out.height == sample_summary.height == out.get_column("customer_id").n_unique()
    assert (
        out.get_column("customer_id").to_list()
        == sample_summary.get_column("customer_id").to_list()
    )
    p_alive = out.get_column("p_alive")
    assert p_alive.min() >= 0 and p_alive.max() <= 1
    assert out.get_column("predicted_clv").min() >= 0
    assert out.select(pl.all().null_count()).row(0)[:-1] == (0,) * 9
    # P(order within h days) is a probability that grows with h
    assert out["p_order_next_30d"].min() >= 0 and out["p_order_next_90d"].max() <= 1
    assert (out["p_order_next_30d"] <= out["p_order_next_90d"]).all()
    # longer horizons never expect fewer purchases
    assert (out["expected_purchases_30d"] <= out["expected_purchases_90d"]).all()
    assert (out["expected_purchases_90d"] <= out["expected_purchases_365d"]).all()
    # weekly model, 365 days: exactly 365/7 weeks of expected purchases
    expected_365 = bgnbd.fitter_.conditional_expected_number_of_purchases_up_to_time(
        365 / 7,
        *(
            sample_summary.get_column(c).to_numpy().astype(float)
            for c in ("frequency", "recency", "T")
        ),
    )
    np.testing.assert_allclose(out["expected_purchases_365d"].to_numpy(), expected_365, rtol=1e-12)
    # next order dates: after as_of, within the limit, and only for customers more likely than
    # not to order within it
    dated = out.filter(pl.col("expected_next_order_date").is_not_null())
    assert dated.height > 0
    assert dated["expected_next_order_date"].min() > as_of
    assert dated["expected_next_order_date"].max() <= as_of + timedelta(days=365)
    likely = 1 - bgnbd.predict_p_no_purchase(sample_summary, horizon_days=365) >= 0.5
    assert out["expected_next_order_date"].is_not_null().to_numpy().tolist() == likely.tolist()


def test_expected_purchases_equal_lifetimes_including_the_overflow_branch(sample_models):
    bgnbd, _ = sample_models
    x = np.array([0, 1, 5, 50, 200, 500.0])
    age = np.array([1, 10, 38, 38, 38, 38.0])
    recency = np.array([0, 5, 30, 37, 38, 38.0])
    for t in (1.0, 52.0, 520.0, 5200.0):  # 2F1 overflows for the heaviest buyers at long horizons
        ours = bgnbd.expected_purchases_units(t, x, recency, age)
        theirs = bgnbd.fitter_.conditional_expected_number_of_purchases_up_to_time(
            t, x, recency, age
        )
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_predictions_without_gamma_gamma_leave_value_columns_null(sample_summary, sample_models):
    bgnbd, _ = sample_models
    out = predict_customer_value(
        sample_summary.head(5), bgnbd=bgnbd, as_of=date(1997, 9, 30), horizons_days=(7,)
    )
    assert "expected_purchases_7d" in out.columns
    assert out["predicted_clv"].null_count() == 5 and out["expected_order_value"].null_count() == 5


def test_median_wait_to_next_purchase_matches_simulation(sample_models):
    bgnbd, _ = sample_models
    r, alpha = bgnbd.params_["r"], bgnbd.params_["alpha"]
    customer = pl.DataFrame({"frequency": [4], "recency": [30.0], "T": [38.0]})
    median_days = bgnbd.predict_median_days_to_next_purchase(customer)[0]
    rng = np.random.default_rng(7)
    rates = rng.gamma(
        shape=r + 4, scale=1 / (alpha + 38.0), size=400_000
    )  # lambda | alive, history
    waits = rng.exponential(1 / rates) * 7
    assert median_days == pytest.approx(np.median(waits), rel=0.02)


def test_p_no_purchase_matches_a_simulated_bgnbd_population(sample_models):
    # customers drawn from the BG/NBD with the fitted parameters: per number of repeat
    # purchases, the mean predicted P(no purchase in the next 13 weeks) must equal the
    # share that bought nothing in those weeks
    bgnbd, _ = sample_models
    r, alpha, a, b = (bgnbd.params_[k] for k in ("r", "alpha", "a", "b"))
    rng = np.random.default_rng(11)
    n, age, horizon = 240_000, 38.0, 13.0
    rate = rng.gamma(shape=r, scale=1 / alpha, size=n)
    dropout = rng.beta(a, b, size=n)
    time, last = np.zeros(n), np.zeros(n)
    repeats = np.zeros(n, dtype=int)
    alive, bought_later = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    active = np.ones(n, dtype=bool)
    while active.any():
        time[active] += rng.exponential(1 / rate[active])
        in_calibration = active & (time <= age)
        repeats[in_calibration] += 1
        last[in_calibration] = time[in_calibration]
        # a customer drops out only right after a repeat purchase
        alive &= ~(in_calibration & (rng.random(n) < dropout))
        bought_later |= active & (time > age) & (time <= age + horizon)
        active = in_calibration & alive
    summary = pl.DataFrame({"frequency": repeats, "recency": last, "T": np.full(n, age)})
    predicted = bgnbd.predict_p_no_purchase(summary, horizon_days=horizon * 7)
    for low, high in ((0, 0), (1, 1), (2, 3), (4, 10_000)):
        group = (repeats >= low) & (repeats <= high)
        assert group.sum() > 2_000
        assert predicted[group].mean() == pytest.approx((~bought_later[group]).mean(), abs=0.015)


def test_naive_next_order_date_is_last_order_plus_average_gap():
    summary = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "frequency": [2, 0, 1],
            "recency": [20.0, 0.0, 10.0],
            "last_purchase_at": [
                datetime(2024, 1, 21, 15),
                datetime(2024, 1, 5),
                datetime(2024, 1, 10),
            ],
        }
    )
    out = predict_naive_next_order_dates(summary, as_of=date(2024, 1, 25))
    # a: gap 10 days -> 01-31; b: one-time buyer; c: 01-20 is overdue -> day after as_of
    assert out.rows() == [("a", date(2024, 1, 31)), ("b", None), ("c", date(2024, 1, 26))]
    literal = predict_naive_next_order_dates(summary, as_of=date(2024, 1, 25), clip_to_as_of=False)
    assert literal["naive_next_order_date"][2] == date(2024, 1, 20)


def test_next_order_scores_compare_model_and_naive_on_the_same_customers():
    predictions = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "expected_next_order_date": [
                date(2024, 2, 1),
                date(2024, 2, 10),
                None,
                date(2024, 3, 1),
            ],
            "naive_next_order_date": [date(2024, 2, 5), date(2024, 2, 4), date(2024, 2, 2), None],
        }
    )
    actual = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "x"],
            "next_order_date": [
                date(2024, 2, 3),
                date(2024, 2, 5),
                date(2024, 2, 2),
                date(2024, 2, 9),
            ],
        }
    )
    metrics = {
        row[1]: (row[2], row[3]) for row in score_next_order_dates(predictions, actual).rows()
    }
    assert metrics["mae_days"] == (pytest.approx((2 + 5) / 2), pytest.approx((2 + 1) / 2))
    assert metrics["customers_scored"] == (2, 2)
    assert metrics["coverage"] == (pytest.approx(2 / 3), pytest.approx(3 / 3))


@pytest.mark.parametrize(
    "unit_days, horizon_days, rate", [(1, 365, 0.10), (7, 365, 0.10), (1, 400, 0.0)]
)
def test_fast_discounted_purchases_equal_the_step_by_step_sum(
    sample_models, unit_days, horizon_days, rate
):
    # exact timestamps: every customer has another T, so the discounted sum is interpolated per
    # frequency (Chebyshev in log(alpha + T)); heavy buyers have too few customers and are summed
    bgnbd, _ = sample_models
    model = clone(bgnbd)
    model.set_params(unit_days=unit_days)
    model.params_ = dict(bgnbd.params_)
    model.params_["alpha"] = bgnbd.params_["alpha"] * 7 / unit_days  # the CDNOW fit is in weeks
    model.fitter_ = likelihood.BetaGeoFitter()
    model.fitter_.params_ = pd.Series(model.params_)
    rng = np.random.default_rng(11)
    n = 6000
    frequency = np.concatenate([rng.poisson(2.0, n - 40), rng.integers(30, 400, 40)]).astype(float)
    age = np.concatenate(
        [rng.uniform(0, 3 * 365 / unit_days, n - 5), [0.0, 1e-4, 0.5, 1e3, 1e4 / unit_days]]
    )
    recency = np.where(frequency > 0, age * rng.uniform(0, 1, n), 0.0)
    times, factors = predict.discount_schedule(float(horizon_days), float(unit_days), rate)
    fast = model.discounted_purchases_units(
        np.asarray(times) / unit_days, factors, frequency, recency, age
    )
    slow = discounted_expected_purchases(
        lambda days: model.expected_purchases_units(days / unit_days, frequency, recency, age),
        horizon_days=horizon_days,
        step_days=unit_days,
        annual_discount_rate=rate,
    )
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
    # the same numbers through predict_customer_value, dates-only data (few distinct T) included
    for rounded in (False, True):
        summary = pl.DataFrame(
            {
                "customer_id": [str(i) for i in range(n)],
                "frequency": frequency,
                "recency": np.floor(recency) if rounded else recency,
                "T": np.floor(age) if rounded else age,
                "monetary_value": np.full(n, 10.0),
            }
        )
        f, r, t = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
        slow = discounted_expected_purchases(
            lambda days, f=f, r=r, t=t: model.expected_purchases_units(days / unit_days, f, r, t),
            horizon_days=horizon_days,
            step_days=unit_days,
            annual_discount_rate=rate,
        )
        gamma_gamma = GammaGammaModel()
        gamma_gamma.params_ = {"p": 6.0, "q": 4.0, "gamma": 15.0}
        out = predict_customer_value(
            summary,
            bgnbd=model,
            gamma_gamma=gamma_gamma,
            as_of=date(2024, 1, 1),
            clv_horizon_days=horizon_days,
            annual_discount_rate=rate,
        )
        np.testing.assert_allclose(
            out["predicted_clv"].to_numpy(),
            np.maximum(slow * gamma_gamma.predict(summary), 0),
            rtol=1e-9,
        )
        for h in (30, 90, 365):
            np.testing.assert_array_equal(
                out[f"expected_purchases_{h}d"].to_numpy(),
                np.maximum(model.expected_purchases_units(h / unit_days, f, r, t), 0.0),
            )


# --------------------------------------------------------------------------- holdout, data checks


def test_holdout_check_returns_model_and_naive_metrics(cdnow_sample):
    cdnow_sample.execute(
        HOLDOUT_SQL,
        {
            "calibration_end": date(1997, 9, 30),
            "as_of": date(1998, 6, 30),
            "unit_days": 7,
            "period_days": 1,
            "resolution": "both",
        },
    )
    holdout = cdnow_sample.sql(
        "select * from models.clv_holdout where resolution = 'periods' order by customer_id"
    ).pl()
    metrics = evaluate_holdout(holdout, model=BetaGeoModel(unit_days=7))
    assert metrics.columns == ["model", "metric", "value", "baseline"]
    values = {row[1]: (row[2], row[3]) for row in metrics.rows()}
    actual = holdout["frequency_holdout"].sum()
    naive = np.where(holdout["T_cal"] > 0, holdout["frequency_cal"] / holdout["T_cal"], 0) * 39.0
    assert values["holdout_actual_repeat_purchases"] == (actual, actual)
    assert values["holdout_predicted_repeat_purchases"][1] == pytest.approx(naive.sum())
    naive_mae = np.mean(np.abs(naive - holdout["frequency_holdout"].to_numpy()))
    assert values["holdout_mae_repeat_purchases"][1] == pytest.approx(naive_mae)
    assert values["holdout_total_purchases_relative_error"][1] == pytest.approx(
        (naive.sum() - actual) / actual
    )
    # the BG/NBD beats the naive rate on CDNOW
    assert values["holdout_mae_repeat_purchases"][0] < values["holdout_mae_repeat_purchases"][1]
    model_error, naive_error = values["holdout_total_purchases_relative_error"]
    assert abs(model_error) < abs(naive_error)


def test_check_enough_data_names_the_first_shortfall():
    summary = pl.DataFrame({"frequency": [1] * 40 + [0] * 80, "T": [100.0] * 120})
    assert check_enough_data(summary) is None
    assert "Only 120 customers" in check_enough_data(summary, min_customers=200)
    assert "Only 40 customers bought more than once" in check_enough_data(
        summary, min_repeat_buyers=50
    )
    reason = check_enough_data(summary, unit_days=1, min_history_days=120)
    assert reason == "The purchase history covers only 100 days; the CLV models need at least 120."
    assert check_enough_data(summary, unit_days=7, min_history_days=120) is None


def test_resolution_is_exact_for_timestamps_and_periods_for_dates():
    assert choose_resolution(True) == "exact"
    assert choose_resolution(False) == "periods"
    assert choose_resolution(True, "periods") == "periods"
    with pytest.raises(ValueError, match="resolution must be one of auto, periods, exact"):
        choose_resolution(True, "weekly")


def test_time_of_day_detection_ignores_midnight_and_time_zone_shifted_dates():
    days = [datetime(2024, 1, 1) + timedelta(days=i) for i in range(300)]
    assert not detect_time_of_day(pl.Series(days))
    # dates from Europe/Berlin converted to UTC: 23:00 in winter, 22:00 in summer
    shifted = [d - timedelta(hours=1 if d.month < 4 else 2) for d in days]
    assert not detect_time_of_day(shifted)
    rng = np.random.default_rng(1)
    timed = [d + timedelta(seconds=int(s)) for d, s in zip(days, rng.integers(0, 86400, 300))]
    assert detect_time_of_day(pl.Series(timed))
    assert not detect_time_of_day(pl.Series([], dtype=pl.Datetime))
    # counted in SQL: one count per distinct time of day
    con = duckdb.connect()
    con.register("t", pl.DataFrame({"order_at": timed + [None]}))
    counts = con.sql(
        "select count(*) as count from t where order_at is not null group by order_at::time"
    ).pl()
    assert detect_time_of_day(time_counts=counts["count"]) is True
    assert detect_time_of_day(time_counts=[150, 148, 2]) is False  # 2 of 300 off the two commonest
    assert detect_time_of_day(time_counts=[150, 140, 10]) is True
    assert detect_time_of_day(time_counts=[]) is False
