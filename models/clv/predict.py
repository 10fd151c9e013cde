"""Per-customer value predictions from fitted models: CLV, discounting, next-order dates.

:func:`predict_customer_value` combines a fitted :class:`~models.clv.beta_geo.BetaGeoModel`
and :class:`~models.clv.gamma_gamma.GammaGammaModel` into one row per customer (P(alive),
expected purchases, expected order value, discounted CLV, expected next order date);
:func:`discounted_expected_purchases` and :func:`discount_schedule` are the discounting, and
:func:`predict_naive_next_order_dates` is the baseline the next-order dates are scored against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import date, timedelta

import numpy as np
import polars as pl

from models.clv import next_order
from models.clv.beta_geo import BetaGeoModel
from models.clv.gamma_gamma import GammaGammaModel


def discounted_expected_purchases(
    cumulative_purchases: Callable[[float], np.ndarray],
    *,
    horizon_days: float,
    step_days: float,
    annual_discount_rate: float,
    days_per_year: float = 365.0,
) -> np.ndarray:
    """Discounted expected purchases over exactly ``horizon_days``.

    sum over k of [C(t_k) - C(t_(k-1))] * (1 + d) ** (-t_k / days_per_year), with
    t_k = min(k * step_days, horizon_days), k = 1 .. ceil(horizon_days / step_days): each step's
    expected purchases are discounted from the step's end, and the last step is cut at the
    horizon. The annual rate d becomes (1 + d) ** (step_days / days_per_year) - 1 per step.

    Parameters
    ----------
    cumulative_purchases : callable
        C(t): expected purchases in the first t days after the end of observation, one value
        per customer.
    horizon_days, step_days : float
        Horizon and step length in days (the step is the model's time unit).
    annual_discount_rate : float
        E.g. 0.10 for 10% a year.
    """
    total, previous = None, None
    for t, factor in zip(
        *discount_schedule(horizon_days, step_days, annual_discount_rate, days_per_year)
    ):
        current = np.asarray(cumulative_purchases(t), dtype=float)
        if previous is None:
            total, previous = np.zeros_like(current), np.zeros_like(current)
        total = total + (current - previous) * factor
        previous = current
    return total


def discount_schedule(
    horizon_days: float, step_days: float, annual_discount_rate: float, days_per_year: float = 365.0
) -> tuple[list[float], list[float]]:
    """The step ends t_k (days) and discount factors (1 + d) ** (-t_k / days_per_year) of
    :func:`discounted_expected_purchases`."""
    if horizon_days <= 0 or step_days <= 0:
        raise ValueError("horizon_days and step_days must be positive")
    if annual_discount_rate <= -1:
        raise ValueError(f"annual_discount_rate must be > -1, got {annual_discount_rate}")
    steps = math.ceil(horizon_days / step_days - 1e-9)
    times = [min(k * step_days, horizon_days) for k in range(1, steps + 1)]
    return times, [(1.0 + annual_discount_rate) ** (-t / days_per_year) for t in times]


def _unique_rows(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Distinct rows of equal-length float arrays and, per input row, the index of its distinct
    row (np.unique(axis=0) without its slow structured sort)."""
    order = np.lexsort(columns[::-1])
    if order.size == 0:
        return tuple(c[:0] for c in columns), np.zeros(0, dtype=np.intp)
    new = np.zeros(order.size, dtype=bool)
    new[0] = True
    for column in columns:
        ordered = column[order]
        new[1:] |= ordered[1:] != ordered[:-1]
    group = np.cumsum(new) - 1
    inverse = np.empty(order.size, dtype=np.intp)
    inverse[order] = group
    return tuple(column[order][new] for column in columns), inverse


def predict_customer_value(
    summary: pl.DataFrame,
    *,
    bgnbd: BetaGeoModel,
    gamma_gamma: GammaGammaModel | None = None,
    as_of: date,
    horizons_days: Sequence[int] = (30, 90, 365),
    clv_horizon_days: int = 365,
    annual_discount_rate: float = 0.10,
    order_probability_horizons_days: Sequence[int] = (30, 90),
    next_order_min_probability: float = 0.5,
    next_order_max_days: int = 365,
) -> pl.DataFrame:
    """Per-customer value predictions, one row per summary row (customer).

    Parameters
    ----------
    summary : DataFrame
        ``models.clv_summary`` for the resolution the models were fitted on: customer_id,
        frequency, recency, T, monetary_value.
    bgnbd, gamma_gamma : fitted models
        Without ``gamma_gamma`` the spend and CLV columns are null.
    as_of : date
        Observation date of the summary.
    horizons_days : ints, default (30, 90, 365)
        One ``expected_purchases_<h>d`` column each.
    clv_horizon_days : int, default 365
        CLV covers exactly these days after as_of.
    annual_discount_rate : float, default 0.10
    order_probability_horizons_days : ints, default (30, 90)
        One ``p_order_next_<h>d`` column each.
    next_order_min_probability : float, default 0.5
        Below this P(order within ``next_order_max_days``) there is no expected next order date.
    next_order_max_days : int, default 365
        The horizon of the expected next order date.

    Returns
    -------
    DataFrame with customer_id, p_alive, expected_purchases_<h>d (repeat purchases in the next
    h days), p_order_next_<h>d (P(at least one order in the next h days) = 1 - P(no purchase),
    :func:`models.clv.next_order.predict_order_probabilities`), expected_order_value (Gamma-Gamma conditional mean spend per order), predicted_clv
    (discounted expected spend over ``clv_horizon_days``: per period of the model's unit,
    expected purchases x expected order value x (1 + rate)^(-end of period / 365), see
    :func:`discounted_expected_purchases`; lifetimes' customer_lifetime_value is not used
    because its month is 30 days), expected_next_order_date (date).

    expected_next_order_date is as_of + the median day of the next order among the outcomes
    where the customer orders within ``next_order_max_days`` (whole days, at least 1); null when
    P(order within ``next_order_max_days``) < ``next_order_min_probability``: see
    :func:`models.clv.next_order.predict_next_order_offsets` for why this date and not the
    median wait given the customer is alive.
    """
    bgnbd.check_fitted()
    if "customer_id" not in summary.columns:
        raise ValueError("summary lacks column customer_id")
    frequency, recency, age = bgnbd.summary_arrays(summary)
    unit = bgnbd.unit_days

    # E[Y(t)] = first * (1 - survival(t)) / denominator: the factors are cheap per customer,
    # the 2F1 in survival(t) depends only on (frequency, T), so it is computed once per pair.
    # The discounted sum over every day (or week) of the CLV horizon is computed per distinct
    # frequency over T (BetaGeoModel.discounted_purchases_units), not day by day per customer.
    pairs, inverse = _unique_rows(frequency, age)
    first, denominator = bgnbd.purchase_factors(frequency, recency, age)

    columns: dict[str, object] = {"customer_id": summary.get_column("customer_id")}
    p_alive = bgnbd.predict_p_alive(summary)
    columns["p_alive"] = p_alive
    for horizon in horizons_days:
        survival = bgnbd.survival_units(float(horizon) / unit, *pairs)[inverse]
        with np.errstate(all="ignore"):
            expected = first * (1 - survival) / denominator
        columns[f"expected_purchases_{int(horizon)}d"] = np.maximum(expected, 0.0)
    columns.update(
        next_order.predict_order_probabilities(bgnbd, summary, order_probability_horizons_days)
    )

    if gamma_gamma is not None:
        order_value = gamma_gamma.predict(summary)
        times, factors = discount_schedule(
            float(clv_horizon_days), float(unit), annual_discount_rate
        )
        discounted = bgnbd.discounted_purchases_units(
            np.asarray(times) / unit, factors, frequency, recency, age
        )
        # tiny negative increments can come from the hypergeometric series; CLV is >= 0
        columns["expected_order_value"] = order_value
        columns["predicted_clv"] = np.maximum(discounted * order_value, 0.0)
    else:
        columns["expected_order_value"] = np.full(summary.height, np.nan)
        columns["predicted_clv"] = np.full(summary.height, np.nan)

    columns["expected_next_order_offset"] = next_order.predict_next_order_offsets(
        bgnbd,
        summary,
        max_days=next_order_max_days,
        min_probability=next_order_min_probability,
    )
    frame = pl.DataFrame(columns).with_columns(
        pl.col("expected_order_value", "predicted_clv").fill_nan(None),
        pl.col("expected_next_order_offset").fill_nan(None),
    )
    return frame.with_columns(
        (pl.lit(as_of) + pl.duration(days=pl.col("expected_next_order_offset").cast(pl.Int64)))
        .cast(pl.Date)
        .alias("expected_next_order_date")
    ).drop("expected_next_order_offset")


def predict_naive_next_order_dates(
    summary: pl.DataFrame, *, as_of: date, unit_days: int = 1, clip_to_as_of: bool = True
) -> pl.DataFrame:
    """Baseline: last order date + the customer's average gap between purchases.

    The average gap is recency / frequency (in days: x unit_days), i.e. (last - first) / number
    of repeat purchases; customers without a repeat purchase get null. With ``clip_to_as_of``
    (default) an overdue date is moved to the day after as_of, since no order came up to as_of.

    Returns one row per summary row: customer_id, naive_next_order_date (date).
    """
    gap = pl.col("recency") * unit_days / pl.col("frequency")
    naive = pl.col("last_purchase_at").cast(pl.Date) + pl.duration(days=gap.round(0).cast(pl.Int64))
    if clip_to_as_of:
        naive = pl.max_horizontal(naive, pl.lit(as_of + timedelta(days=1)))
    return summary.select(
        "customer_id",
        pl.when(pl.col("frequency") > 0)
        .then(naive)
        .otherwise(None)
        .cast(pl.Date)
        .alias("naive_next_order_date"),
    )
