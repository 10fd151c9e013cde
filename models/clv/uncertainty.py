"""CLV under the fitted parameters' uncertainty: ``predicted_clv_low`` / ``predicted_clv_high``.

The fits maximise the likelihood in log-parameters, and their Hessian there (of the mean
negative log-likelihood, ``fitter_._hessian_``) gives the asymptotic normal of the
log-parameters: covariance inv(H) / n, n the number of customers (the weights of the
compressed summary). :func:`clv_interval` draws ``n_draws`` parameter vectors from it,
seeded (log space, so every draw is positive; the BG/NBD and Gamma-Gamma vectors
independently, as they are fitted apart), recomputes each customer's CLV per draw on the
distinct (frequency, recency, T, monetary value) rows only, and takes the 10th and 90th
percentile per customer. It is parameter uncertainty only: not the randomness of the
customer's own future purchases, which is far larger for one customer.

The model interface this needs: ``params_`` (dict of positive parameters) and either
``log_parameter_covariance()`` (the customer-base models) or ``fitter_`` with ``_hessian_``
in the order of ``params_`` (lifetimes' fitters: Gamma-Gamma), and, for the purchase model,
``unit_days``, ``discounted_purchases_units`` and ``discount_interpolants`` (see
:class:`~models.clv.beta_geo.BetaGeoModel`);
Gamma-Gamma's ``predict``. A purchase model without these (or a Hessian that is not
positive definite) gives no interval: :func:`clv_interval` returns None and the columns
stay NULL. Used with BG/NBD, MBG/NBD and Pareto/NBD (each draw moves P(alive) too).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from models.clv.beta_geo import age_domains, frequency_groups
from models.clv.predict import _unique_rows, discount_schedule

DEFAULT_CLV_DRAWS = 200
DEFAULT_CLV_SEED = 20_260_101
DEFAULT_CLV_QUANTILES = (0.1, 0.9)
# draws x distinct rows held at once (8 bytes each)
_MAX_MATRIX_CELLS = 4_000_000


def log_parameter_covariance(model) -> np.ndarray | None:
    """Covariance of the log-parameters (in the order of ``model.params_``) from the fit's
    Hessian: inv(H) / n; None when the model does not expose a Hessian or it is not
    positive definite (no identifiable uncertainty)."""
    params = getattr(model, "params_", None)
    if params is not None and hasattr(model, "log_parameter_covariance"):
        # the customer-base models (BG/NBD, MBG/NBD, Pareto/NBD) know the scale of their
        # own Hessian: lifetimes' is of the mean likelihood, Pareto/NBD's of the total
        try:
            covariance = np.asarray(model.log_parameter_covariance(), dtype=float)
        except np.linalg.LinAlgError:
            return None
        if covariance.shape != (len(params), len(params)) or not np.isfinite(covariance).all():
            return None
        covariance = (covariance + covariance.T) / 2
        try:
            np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            return None
        return covariance
    fitter = getattr(model, "fitter_", None)
    hessian = getattr(fitter, "_hessian_", None)
    if hessian is None or params is None:
        return None
    hessian = np.asarray(hessian, dtype=float)
    if hessian.shape != (len(params), len(params)) or not np.isfinite(hessian).all():
        return None
    try:
        np.linalg.cholesky(hessian)
    except np.linalg.LinAlgError:
        return None
    n = float(np.asarray(fitter.data["weights"]).sum())
    covariance = np.linalg.inv(hessian) / n
    return (covariance + covariance.T) / 2


def draw_parameters(model, n_draws: int, rng: np.random.Generator) -> list[dict[str, float]] | None:
    """``n_draws`` parameter dicts exp(N(log params_, covariance)); None without a covariance."""
    covariance = log_parameter_covariance(model)
    if covariance is None:
        return None
    names = list(model.params_)
    mean = np.log([model.params_[name] for name in names])
    draws = np.exp(rng.multivariate_normal(mean, covariance, size=n_draws, method="cholesky"))
    return [dict(zip(names, row, strict=True)) for row in draws]


def _with_params(model, params: dict[str, float]):
    clone = copy.copy(model)
    clone.params_ = dict(params)
    return clone


def _clv(purchases, spend, rows: pl.DataFrame, times_units, factors, interpolants) -> np.ndarray:
    """predicted_clv of :func:`~models.clv.predict.predict_customer_value` for ``rows``."""
    frequency, recency, age = purchases.summary_arrays(rows)
    discounted = purchases.discounted_purchases_units(
        times_units, factors, frequency, recency, age, interpolants
    )
    with np.errstate(all="ignore"):
        return np.maximum(discounted * spend.predict(rows), 0.0)


@dataclass
class IntervalPlan:
    """Everything the CLV interval of a customer needs besides their own summary row,
    decided once over all customers (:func:`plan_clv_interval`); small (no fitted data),
    so that it can be sent to every customer-bucket task.

    ``interpolants``: per draw (and ``point_interpolants`` for the fitted parameters), per
    frequency, the discounted-purchases interpolant over the range of T of all customers
    with that frequency (:meth:`~models.clv.beta_geo.BetaGeoModel.discount_interpolants`):
    built once here, at a cost that grows with the distinct frequencies, not with the
    customers, so that a customer's interval depends on their row only, not on which
    customers are computed with them, and a bucket only evaluates them."""

    purchases: Any  # the fitted purchase model, without its fitter
    spend: Any  # the fitted spend model, without its fitter
    purchase_draws: list[dict[str, float]]
    spend_draws: list[dict[str, float]]
    interpolants: list[dict[float, Any]]
    point_interpolants: dict[float, Any]
    times_units: np.ndarray
    factors: np.ndarray
    quantiles: tuple[float, float]


def _without_fitter(model):
    light = copy.copy(model)
    light.__dict__.pop("fitter_", None)
    return light


def plan_clv_interval(
    summary: pl.DataFrame,
    *,
    purchases,
    spend,
    clv_horizon_days: int = 365,
    annual_discount_rate: float = 0.10,
    n_draws: int = DEFAULT_CLV_DRAWS,
    seed: int = DEFAULT_CLV_SEED,
    quantiles: tuple[float, float] = DEFAULT_CLV_QUANTILES,
) -> IntervalPlan | None:
    """The parameter draws and the interpolants of :func:`clv_interval` for the
    customers of ``summary`` (arguments as there); None when either model's parameters
    have no usable covariance or the purchase model cannot be redrawn."""
    if n_draws < 2:
        raise ValueError(f"n_draws must be at least 2, got {n_draws}")
    low_q, high_q = quantiles
    if not 0 <= low_q < high_q <= 1:
        raise ValueError(f"quantiles must satisfy 0 <= low < high <= 1, got {quantiles}")
    needed = ("unit_days", "summary_arrays", "discounted_purchases_units", "discount_interpolants")
    if not all(hasattr(purchases, name) for name in needed):
        return None  # a purchase model this module does not know how to redraw
    rng = np.random.default_rng(seed)
    purchase_draws = draw_parameters(purchases, n_draws, rng)
    spend_draws = draw_parameters(spend, n_draws, rng)
    if purchase_draws is None or spend_draws is None:
        return None
    frequency, _, age = purchases.summary_arrays(summary)
    domains = age_domains(frequency, age)
    unit = purchases.unit_days
    times, factors = discount_schedule(float(clv_horizon_days), float(unit), annual_discount_rate)
    times_units, factors = np.asarray(times) / unit, np.asarray(factors, dtype=float)
    light = _without_fitter(purchases)
    return IntervalPlan(
        purchases=light,
        spend=_without_fitter(spend),
        purchase_draws=purchase_draws,
        spend_draws=spend_draws,
        interpolants=[
            _with_params(light, p).discount_interpolants(times_units, factors, domains)
            for p in purchase_draws
        ],
        point_interpolants=light.discount_interpolants(times_units, factors, domains),
        times_units=times_units,
        factors=factors,
        quantiles=(low_q, high_q),
    )


def _clv_under_draws(plan: IntervalPlan, purchase_models, spend_models, rows) -> np.ndarray:
    """predicted_clv of ``rows`` under every draw, shape (draws, rows): per distinct
    frequency, every draw's interpolant is evaluated in one pass (numpy's chebval over a
    (degree, draws, 1) coefficient array, shorter ones padded with zero coefficients, which
    leave Clenshaw's recurrence exactly as it was), not one call per draw and frequency."""
    first_model = purchase_models[0]
    frequency, recency, age = first_model.summary_arrays(rows)
    n_draws = len(purchase_models)
    times, factors = plan.times_units, plan.factors
    shifts = np.array([m._time_shift() for m in purchase_models])
    drop = np.empty((n_draws, age.size))
    for xv, index, ages, where in frequency_groups(frequency, age):
        given = [draw[xv] for draw in plan.interpolants]
        fitted = [k for k, g in enumerate(given) if g is not None]
        at = np.empty((n_draws, ages.size))
        for k in (k for k, g in enumerate(given) if g is None):
            at[k] = purchase_models[k]._discount_sum(times, factors, xv, ages)
        if fitted:
            middle = np.array([given[k][0] for k in fitted])[:, None]
            half = np.array([given[k][1] for k in fitted])[:, None]
            degree = max(given[k][2].size for k in fitted)
            coefficients = np.zeros((degree, len(fitted), 1))
            for i, k in enumerate(fitted):
                coefficients[: given[k][2].size, i, 0] = given[k][2]
            u = np.clip(
                (np.log(shifts[fitted][:, None] + ages[None, :]) - middle) / half, -1.0, 1.0
            )
            at[fitted] = np.polynomial.chebyshev.chebval(u, coefficients, tensor=False)
        drop[:, index] = at[:, where]
    out = np.empty((n_draws, age.size))
    for k, (purchases, spend) in enumerate(zip(purchase_models, spend_models, strict=True)):
        first, denominator = purchases.purchase_factors(frequency, recency, age)
        with np.errstate(all="ignore"):
            out[k] = np.maximum(first * drop[k] / denominator * spend.predict(rows), 0.0)
    return out


def interval_for_customers(plan: IntervalPlan, summary: pl.DataFrame) -> pl.DataFrame:
    """:func:`clv_interval`'s frame for the customers of ``summary``, all of them among
    those ``plan`` was made for: each row's values depend on that row and ``plan`` only, so
    any split of the customers (the Dask runner's buckets) gives the same values."""
    columns = [
        summary.get_column(name).to_numpy().astype(float)
        for name in ("frequency", "recency", "T", "monetary_value")
    ]
    distinct, inverse = _unique_rows(*columns)
    rows = pl.DataFrame(
        dict(zip(("frequency", "recency", "T", "monetary_value"), distinct, strict=True))
    )
    times_units, factors = plan.times_units, plan.factors
    purchase_models = [_with_params(plan.purchases, p) for p in plan.purchase_draws]
    spend_models = [_with_params(plan.spend, q) for q in plan.spend_draws]
    n_draws = len(purchase_models)
    low = np.empty(rows.height)
    high = np.empty(rows.height)
    # Chunks of distinct rows keep the draws x rows matrix small (~32 MB).
    chunk = max(1000, _MAX_MATRIX_CELLS // n_draws)
    for start in range(0, rows.height, chunk):
        part = rows[start : start + chunk]
        values = _clv_under_draws(plan, purchase_models, spend_models, part)
        bounds = np.quantile(values, plan.quantiles, axis=0)
        # a draw can make a formula undefined (e.g. a BG/NBD a <= 1 for E[Y]); those draws
        # are skipped (nanquantile, 20x slower than quantile, on those customers only: a
        # customer's values never depend on the others in the chunk)
        undefined = np.isnan(values).any(axis=0)
        if undefined.any():
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                bounds[:, undefined] = np.nanquantile(values[:, undefined], plan.quantiles, axis=0)
        low[start : start + chunk], high[start : start + chunk] = bounds
    # CLV is not linear in the parameters, so the point estimate can fall just outside the
    # quantiles of the draws; the interval is widened to hold it (low <= predicted_clv <= high)
    point = _clv(plan.purchases, plan.spend, rows, times_units, factors, plan.point_interpolants)
    low, high = np.fmin(low, point), np.fmax(high, point)
    return pl.DataFrame(
        {
            "customer_id": summary.get_column("customer_id"),
            "predicted_clv_low": low[inverse],
            "predicted_clv_high": high[inverse],
        },
        schema={
            "customer_id": summary.schema["customer_id"],
            "predicted_clv_low": pl.Float64,
            "predicted_clv_high": pl.Float64,
        },
    ).with_columns(pl.col("predicted_clv_low", "predicted_clv_high").fill_nan(None))


def clv_interval(
    summary: pl.DataFrame,
    *,
    purchases,
    spend,
    clv_horizon_days: int = 365,
    annual_discount_rate: float = 0.10,
    n_draws: int = DEFAULT_CLV_DRAWS,
    seed: int = DEFAULT_CLV_SEED,
    quantiles: tuple[float, float] = DEFAULT_CLV_QUANTILES,
) -> pl.DataFrame | None:
    """Per customer, the ``quantiles`` of predicted CLV over parameter draws.

    Parameters
    ----------
    summary : DataFrame
        ``models.clv_summary`` rows: customer_id, frequency, recency, T, monetary_value.
    purchases : fitted purchase model (BetaGeoModel)
    spend : fitted GammaGammaModel
    clv_horizon_days, annual_discount_rate
        As for ``predict_customer_value`` (days; a yearly rate, 0.10 = 10%).
    n_draws : int
        Parameter vectors drawn (each recomputes CLV for every distinct summary row).
    seed : int
        Seeds the draws: the same inputs give the same interval.
    quantiles : (low, high)
        Default the 10th and 90th percentiles.

    Returns
    -------
    DataFrame customer_id, predicted_clv_low, predicted_clv_high (currency units, like
    predicted_clv; widened to hold predicted_clv where it falls outside the quantiles), one
    row per summary row in its order; None when either model's parameters have no usable
    covariance. The same as :func:`plan_clv_interval` then :func:`interval_for_customers`.
    """
    plan = plan_clv_interval(
        summary,
        purchases=purchases,
        spend=spend,
        clv_horizon_days=clv_horizon_days,
        annual_discount_rate=annual_discount_rate,
        n_draws=n_draws,
        seed=seed,
        quantiles=quantiles,
    )
    return None if plan is None else interval_for_customers(plan, summary)


def add_clv_interval(predictions: pl.DataFrame, interval: pl.DataFrame | None) -> pl.DataFrame:
    """``predictions`` with predicted_clv_low and predicted_clv_high from ``interval``
    (:func:`interval_for_customers`' frame, matched on customer_id, in any order); NULL
    where there is none (no spend model, or no usable covariance)."""
    if interval is None:
        return predictions.with_columns(
            predicted_clv_low=pl.lit(None, pl.Float64), predicted_clv_high=pl.lit(None, pl.Float64)
        )
    return predictions.join(interval, on="customer_id", how="left", maintain_order="left")
