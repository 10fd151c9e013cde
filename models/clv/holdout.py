"""Back-test metrics of the CLV models against what customers did after the calibration period.

:func:`evaluate_holdout` scores the BG/NBD's repeat purchases in a holdout period
(``models.clv_holdout``) against a naive rate; :func:`score_next_order_dates` scores the
model's and the naive next-order dates against the actual next orders.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.base import clone

from models.clv.beta_geo import BetaGeoModel
from models.clv.fitting import tidy_metrics
from models.clv.summary import validate_summary


def evaluate_holdout(
    holdout: pl.DataFrame, *, model: BetaGeoModel | None = None, refit: bool = True
) -> pl.DataFrame:
    """Refit a customer-base model on the calibration period and score its holdout purchase
    predictions (BG/NBD by default; any candidate of :mod:`models.clv.candidates`).

    Parameters
    ----------
    holdout : DataFrame
        ``models.clv_holdout`` for one resolution, one row per customer: customer_id,
        frequency_cal, recency_cal, T_cal, frequency_holdout, duration_holdout (units).
    model : BetaGeoModel, optional
        Its hyperparameters (unit_days, penalizers, ...) are used for a fresh fit; default
        ``BetaGeoModel()``.
    refit : bool, default True
        False: ``model`` is already fitted on the calibration columns (frequency_cal,
        recency_cal, T_cal of this ``holdout``) and is scored as it is.

    Returns
    -------
    Tidy metrics, model = the fitted model's name (bgnbd, mbgnbd, pareto_nbd), value = model, baseline = naive (each customer's calibration
    repeat-purchase rate frequency_cal / T_cal times the holdout length):
    ``holdout_mae_repeat_purchases`` per-customer mean absolute error;
    ``holdout_total_purchases_relative_error`` (predicted total - actual total) / actual total;
    ``holdout_predicted_repeat_purchases`` predicted totals; ``holdout_actual_repeat_purchases``
    and ``holdout_customers`` (same value in both columns).

    Raises ModelFitError when the calibration fit fails.
    """
    required = ("frequency_cal", "recency_cal", "T_cal", "frequency_holdout", "duration_holdout")
    validate_summary(holdout, required, "holdout")
    calibration = holdout.select(
        pl.col("frequency_cal").alias("frequency"),
        pl.col("recency_cal").alias("recency"),
        pl.col("T_cal").alias("T"),
    )
    if refit:
        fitted = clone(model if model is not None else BetaGeoModel()).fit(calibration)
    elif model is None:
        raise ValueError("refit=False needs a fitted model")
    else:
        model.check_fitted()
        fitted = model
    predicted, naive, actual = holdout_predictions(holdout, fitted)
    total_actual = float(actual.sum())

    def relative_error(values):
        return (float(values.sum()) - total_actual) / total_actual if total_actual > 0 else None

    rows = [
        (
            "holdout_mae_repeat_purchases",
            float(np.mean(np.abs(predicted - actual))),
            float(np.mean(np.abs(naive - actual))),
        ),
        (
            "holdout_total_purchases_relative_error",
            relative_error(predicted),
            relative_error(naive),
        ),
        ("holdout_predicted_repeat_purchases", float(predicted.sum()), float(naive.sum())),
        ("holdout_actual_repeat_purchases", total_actual, total_actual),
        ("holdout_customers", float(holdout.height), float(holdout.height)),
    ]
    return tidy_metrics(fitted.name, rows)


def holdout_predictions(holdout: pl.DataFrame, fitted) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model, naive, actual) repeat purchases per customer in the holdout window.

    ``fitted`` is a customer-base model fitted on the calibration columns of ``holdout``
    (``models.clv_holdout``); naive = frequency_cal / T_cal x duration_holdout (0 when T_cal
    is 0). Counts, one per holdout row.
    """
    calibration = holdout.select(
        pl.col("frequency_cal").alias("frequency"),
        pl.col("recency_cal").alias("recency"),
        pl.col("T_cal").alias("T"),
    )
    frequency, recency, age = fitted.summary_arrays(calibration)
    duration = holdout.get_column("duration_holdout").to_numpy().astype(float)
    actual = holdout.get_column("frequency_holdout").to_numpy().astype(float)
    predicted = fitted.expected_purchases_units(duration, frequency, recency, age)
    with np.errstate(divide="ignore", invalid="ignore"):
        naive = np.where(age > 0, frequency / age, 0.0) * duration
    return predicted, naive, actual


#: The model name of the CLV verdict rows in models.model_metrics.
CLV_VERDICT_MODEL = "clv_verdict"


def holdout_verdict(
    holdout: pl.DataFrame, fitted, *, resamples: int = 1000, seed: int = 0
) -> pl.DataFrame:
    """The chosen customer-base model against the naive rate on holdout MAE, with a seeded
    paired bootstrap over customers.

    Parameters
    ----------
    holdout : DataFrame
        ``models.clv_holdout`` for one resolution.
    fitted : a fitted candidate (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel) on the
        calibration columns of ``holdout``.
    resamples, seed : int
        Bootstrap resamples of the customers (each customer's two absolute errors kept
        together) and the seed of numpy's default_rng.

    Returns
    -------
    Tidy metrics, model='clv_verdict': ``holdout_mae_repeat_purchases`` (value the model's,
    baseline the naive rate's), ``mae_difference`` = naive MAE - model MAE (repeat purchases
    per customer; > 0 the model is better), its 95% percentile interval
    ``mae_difference_ci_low`` / ``_ci_high``, ``significant`` (1 when the interval excludes 0
    on either side, else 0) and ``model_better`` (1 when significant with a positive
    difference). No rows for an empty holdout.
    """
    predicted, naive, actual = holdout_predictions(holdout, fitted)
    if actual.size == 0:
        return tidy_metrics(CLV_VERDICT_MODEL, [])
    gain = np.abs(naive - actual) - np.abs(predicted - actual)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for k in range(resamples):
        means[k] = gain[rng.integers(0, gain.size, gain.size)].mean()
    low, high = (float(v) for v in np.quantile(means, [0.025, 0.975]))
    difference = float(gain.mean())
    significant = low > 0 or high < 0
    rows = [
        (
            "holdout_mae_repeat_purchases",
            float(np.mean(np.abs(predicted - actual))),
            float(np.mean(np.abs(naive - actual))),
        ),
        ("mae_difference", difference, None),
        ("mae_difference_ci_low", low, None),
        ("mae_difference_ci_high", high, None),
        ("significant", float(significant), None),
        ("model_better", float(significant and difference > 0), None),
    ]
    return tidy_metrics(CLV_VERDICT_MODEL, rows)


def score_next_order_dates(
    predictions: pl.DataFrame, actual_next_orders: pl.DataFrame
) -> pl.DataFrame:
    """Mean absolute error in days of the model's and the naive next-order dates.

    Parameters
    ----------
    predictions : DataFrame
        customer_id, expected_next_order_date, naive_next_order_date (dates, nullable).
    actual_next_orders : DataFrame
        customer_id, next_order_date: each customer's first completed order after as_of
        (customers who did not order again are absent or null).

    Returns
    -------
    Tidy metrics, model='next_order_date', value = model, baseline = naive:
    ``mae_days`` over customers with an actual next order and both predictions (so the two are
    compared on the same customers); ``customers_scored`` that count; ``coverage`` the share of
    customers with an actual next order for whom a date was predicted.
    """
    joined = predictions.join(
        actual_next_orders.select("customer_id", "next_order_date").drop_nulls(),
        on="customer_id",
        how="inner",
    )
    common = joined.drop_nulls(["expected_next_order_date", "naive_next_order_date"])

    def mae(column: str) -> float | None:
        if common.height == 0:
            return None
        errors = (pl.col(column) - pl.col("next_order_date")).dt.total_days().abs()
        return float(common.select(errors.mean()).item())

    def coverage(column: str) -> float | None:
        return None if joined.height == 0 else float(joined.get_column(column).is_not_null().mean())

    rows = [
        ("mae_days", mae("expected_next_order_date"), mae("naive_next_order_date")),
        ("customers_scored", float(common.height), float(common.height)),
        ("coverage", coverage("expected_next_order_date"), coverage("naive_next_order_date")),
    ]
    return tidy_metrics("next_order_date", rows)
