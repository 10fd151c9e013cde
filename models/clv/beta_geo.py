"""The BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005): :class:`BetaGeoModel`.

A scikit-learn style estimator around :class:`models.clv.likelihood.BetaGeoFitter`: the fit
with the penalizer ladder, and the predictions (expected purchases, P(alive), the median wait
to the next purchase, the discounted expected purchases with its Chebyshev interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import polars as pl
from scipy.special import hyp2f1
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from models.clv.fitting import (
    DEFAULT_MAX_PARAMETER,
    DEFAULT_PENALIZERS,
    ModelFitError,
    fit_ladder,
    standard_errors,
    tidy_metrics,
    tidy_parameters,
)
from models.clv.likelihood import BetaGeoFitter
from models.clv.summary import SUMMARY_COLUMNS, compress_summary, validate_summary


class BetaGeoModel(BaseEstimator):
    """BG/NBD model of repeat purchases (Fader, Hardie & Lee 2005), on lifetimes' BetaGeoFitter.

    Parameters
    ----------
    unit_days : int, default 1
        Time unit of recency and T in the summary (1 days, 7 weeks); horizons are given in days
        and converted with it.
    penalizers : tuple of float, default (0, 1e-4, 1e-3, 1e-2)
        The ladder: the fit is retried with the next penalizer when it fails to converge or
        gives absurd parameters.
    max_parameter : float, default 1e6
        A parameter above this (or <= 0, or non-finite) counts as a failed fit.
    compress : bool, default True
        Fit on unique (frequency, recency, T) rows with weights; same maximum, less work.
    tol : float, default 1e-7
        Optimiser tolerance passed to lifetimes.

    Attributes
    ----------
    params_ : dict  r, alpha (in units), a, b
    std_errors_ : dict  standard errors of params_
    penalizer_ : float  the penalizer of the accepted fit
    fit_attempts_ : tuple  ((penalizer, failure reason or None), ...) in the order tried
    n_customers_, n_patterns_ : int  customers, and unique (frequency, recency, T) rows
    neg_log_likelihood_ : float  mean negative log-likelihood per customer (with penalty)
    fitter_ : models.clv.likelihood.BetaGeoFitter  a lifetimes.BetaGeoFitter

    The candidates of :mod:`models.clv.candidates` (MBG/NBD, Pareto/NBD) subclass it and
    override the hooks (``_make_fitter``, ``_hyp_parameters``, ``_time_shift``,
    ``purchase_factors``, ...); every caller sees the same interface.
    """

    #: published model name (models.model_parameters / model_metrics) and the name users read
    name = "bgnbd"
    label = "BG/NBD"

    def __init__(
        self,
        *,
        unit_days: int = 1,
        penalizers: tuple[float, ...] = DEFAULT_PENALIZERS,
        max_parameter: float = DEFAULT_MAX_PARAMETER,
        compress: bool = True,
        tol: float = 1e-7,
    ):
        self.unit_days = unit_days
        self.penalizers = penalizers
        self.max_parameter = max_parameter
        self.compress = compress
        self.tol = tol

    def fit(self, summary: pl.DataFrame) -> BetaGeoModel:
        """Fit on ``models.clv_summary`` rows (one resolution): frequency, recency, T.

        Raises ModelFitError when every penalizer fails.
        """
        validate_summary(summary, SUMMARY_COLUMNS, self.label)
        if self.unit_days <= 0:
            raise ValueError(f"unit_days must be positive, got {self.unit_days}")
        if summary.height == 0:
            raise ModelFitError(
                f"The {self.label} model could not be fitted: there are no customers."
            )
        data = (
            compress_summary(summary) if self.compress else summary.with_columns(weights=pl.lit(1))
        )
        frequency = data.get_column("frequency").to_numpy().astype(int)
        recency = data.get_column("recency").to_numpy().astype(float)
        age = data.get_column("T").to_numpy().astype(float)
        weights = data.get_column("weights").to_numpy().astype(float)

        def fit(fitter):
            fitter.fit(frequency, recency, age, weights=weights, tol=self.tol)

        fitter, penalizer, attempts = fit_ladder(
            self.label, self._make_fitter, fit, self.penalizers, self.max_parameter
        )
        self.fitter_ = fitter
        self.params_ = {name: float(value) for name, value in fitter.params_.items()}
        self.std_errors_ = self._standard_errors(fitter)
        self.penalizer_ = penalizer
        self.fit_attempts_ = attempts
        self.n_customers_ = summary.height
        self.n_patterns_ = data.height
        self.neg_log_likelihood_ = self._neg_log_likelihood(fitter)
        reason = degeneracy_reason(self, data.get_column("T").max())
        if reason is not None:
            raise ModelFitError(f"The {self.label} fit was rejected: {reason}.")
        return self

    # hooks the candidates override -------------------------------------------------------

    def _make_fitter(self, penalizer: float):
        return BetaGeoFitter(penalizer_coef=penalizer)

    def _standard_errors(self, fitter) -> dict[str, float]:
        return standard_errors(fitter, list(fitter.params_.index))

    def _neg_log_likelihood(self, fitter) -> float:
        return float(fitter.neg_log_likelihood_)

    def log_hessian(self) -> np.ndarray:
        """The Hessian of the fitted objective in the log-parameters at the optimum (4 x 4)."""
        return np.asarray(self.fitter_._hessian_, dtype=float)

    def log_parameter_covariance(self) -> np.ndarray:
        """Asymptotic covariance of the log-parameters: inv(H) / n, H the Hessian of the mean
        negative log-likelihood (``log_hessian``; lifetimes' fitters), n the customers (the
        summary's weights); raises LinAlgError when H is singular."""
        n = float(np.asarray(self.fitter_.data["weights"]).sum())
        return np.linalg.inv(self.log_hessian()) / n

    def dropout_share(self, max_age_units: float) -> float:
        """How much dropout the fit sees: for BG/NBD the mean dropout probability after a
        purchase, a / (a + b) (dimensionless; ``max_age_units`` is not needed)."""
        a, b = self.params_["a"], self.params_["b"]
        return a / (a + b)

    def _hyp_parameters(self, x):
        """(a', b', c) of the 2F1 in :meth:`survival_units` (FHL 2005 eq. 10)."""
        r, a, b = self.params_["r"], self.params_["a"], self.params_["b"]
        return r + x, b + x, a + b + x - 1

    def _time_shift(self) -> float:
        """The shift of log(shift + T) the Chebyshev interpolation of the discounted sum uses."""
        return self.params_["alpha"]

    def check_fitted(self) -> None:
        """Raise scikit-learn's NotFittedError unless :meth:`fit` has been called."""
        if not hasattr(self, "params_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit first.")

    def summary_arrays(self, summary: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The summary's frequency, recency and T as float arrays, once :func:`validate_summary`
        has accepted them.

        Parameters
        ----------
        summary : DataFrame
            ``models.clv_summary`` rows: frequency, recency and T, recency and T in the model's
            unit (``unit_days`` days).

        Returns
        -------
        (frequency, recency, T) : tuple of ndarray
            One float per summary row each: x, t_x and T, the inputs of the ``*_units`` methods.
        """
        validate_summary(summary, SUMMARY_COLUMNS, self.label)
        return tuple(summary.get_column(c).to_numpy().astype(float) for c in SUMMARY_COLUMNS)

    def expected_purchases_units(self, t_units, frequency, recency, age) -> np.ndarray:
        """FHL (2005) eq. 10, E[Y(t) | x, t_x, T]: expected repeat purchases in (T, T + t].

        The same formula as lifetimes' conditional_expected_number_of_purchases_up_to_time, but
        the Euler-transformed 2F1 is evaluated only where the direct one overflows.

        Parameters
        ----------
        t_units : float or array
            Length t of the period after the end of observation, in the model's unit
            (days / ``unit_days``).
        frequency, recency, age : arrays
            x (repeat purchases), t_x and T per customer, t_x and T in the model's unit (as from
            :meth:`summary_arrays`); broadcast together with ``t_units``.

        Returns
        -------
        ndarray
            Expected repeat purchases (a count), in the broadcast shape of the inputs.
        """
        t, x, t_x, age = np.broadcast_arrays(
            *(np.asarray(v, dtype=float) for v in (t_units, frequency, recency, age))
        )
        first, denominator = self.purchase_factors(x, t_x, age)
        with np.errstate(all="ignore"):
            return first * (1 - self.survival_units(t, x, age)) / denominator

    def purchase_factors(self, frequency, recency, age) -> tuple[np.ndarray, np.ndarray]:
        """The factors of eq. 10 that do not change with t: (a + b + x - 1) / (a - 1) and
        1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x);
        E[Y(t)] = first * (1 - survival(t)) / denominator (see :meth:`survival_units`).

        Parameters
        ----------
        frequency, recency, age : arrays
            x, t_x and T per customer, t_x and T in the model's unit.

        Returns
        -------
        (first, denominator) : tuple of ndarray
            Dimensionless, one value per customer.
        """
        r, alpha, a, b = (self.params_[name] for name in ("r", "alpha", "a", "b"))
        x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        with np.errstate(all="ignore"):
            first = (a + b + x - 1) / (a - 1)
            dropout = np.where(
                x > 0, a / (b + x - 1) * ((alpha + age) / (alpha + t_x)) ** (r + x), 0.0
            )
        return first, 1 + dropout

    def survival_units(self, t_units, frequency, age) -> np.ndarray:
        """The part of eq. 10 that changes with t: ((alpha + T) / (alpha + T + t))^(r + x)
        2F1(r + x, b + x; a + b + x - 1; t / (alpha + T + t)); 1 at t = 0. It depends on a
        customer only through x and T (not t_x), so it can be computed once per distinct (x, T).

        Parameters
        ----------
        t_units : float or array
            Time t after the end of observation, in the model's unit.
        frequency, age : arrays
            x and T per customer, T in the model's unit; broadcast together with ``t_units``.

        Returns
        -------
        ndarray
            Dimensionless, decreasing in t, in the broadcast shape of the inputs; the 2F1 is
            Euler-transformed where the direct one overflows.
        """
        r, alpha = self.params_["r"], self.params_["alpha"]
        t, x, age = np.broadcast_arrays(
            *(np.asarray(v, dtype=float) for v in (t_units, frequency, age))
        )
        with np.errstate(all="ignore"):
            z = t / (alpha + age + t)
            a1, b1, c = (np.broadcast_to(v, x.shape) for v in self._hyp_parameters(x))
            log_hyp = np.log(hyp2f1(a1, b1, c, z))
            overflow = ~np.isfinite(log_hyp)
            if overflow.any():
                # 2F1(a', b'; c; z) = (1 - z)^(c - a' - b') 2F1(c - a', c - b'; c; z)
                ao, bo, zo, co = a1[overflow], b1[overflow], z[overflow], c[overflow]
                log_hyp[overflow] = np.log(hyp2f1(co - ao, co - bo, co, zo)) + (
                    co - ao - bo
                ) * np.log1p(-zo)
            return np.exp(log_hyp + (r + x) * np.log((alpha + age) / (alpha + age + t)))

    def discounted_purchases_units(
        self, times_units, factors, frequency, recency, age, interpolants=None
    ) -> np.ndarray:
        """sum_k factors[k] * (E[Y(times[k])] - E[Y(times[k - 1])]), times[-1] = 0, per customer:
        the discounted expected purchases of :func:`discounted_expected_purchases` for the
        schedule (times_units, factors) of :func:`discount_schedule`.

        E[Y(t)] = first * (1 - survival(t)) / denominator, so the sum is first / denominator
        times D(x, T) = sum_k factors[k] (survival(t_(k-1)) - survival(t_k)), which depends on
        x and T only. Per distinct x, D is computed at each distinct T when there are few
        (dates-only data); otherwise as a Chebyshev interpolant in log(alpha + T), sampled
        at up to 257 nodes and accepted once its last coefficients fall below 1e-12 of the
        largest (D is analytic in a strip around the real log(alpha + T) axis, its nearest
        singularities being where t / (alpha + T) = -1, so the coefficients fall
        geometrically), with exact sums as the fallback. Agrees with the day-by-day sum to
        ~1e-12 relative at M (tests/unit/test_clv.py checks 1e-9).

        Parameters
        ----------
        times_units : array
            Increasing step ends t_k after the end of observation, in the model's unit.
        factors : array
            The discount factor of each step, same length as ``times_units``.
        frequency, recency, age : arrays
            x, t_x and T per customer, t_x and T in the model's unit.
        interpolants : dict, optional
            Per x, the interpolant of D over T to use (:meth:`discount_interpolants`, built
            once for a larger population that holds these customers; None for an x means
            exact sums): then each customer's value depends on its own x, t_x and T only,
            not on which customers are computed together (the CLV interval per customer
            bucket). Default: built here for these customers' own T.

        Returns
        -------
        ndarray
            Discounted expected repeat purchases (a count), one per customer.
        """
        x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        times = np.asarray(times_units, dtype=float)
        factors = np.asarray(factors, dtype=float)
        alpha = self._time_shift()
        drop = np.empty_like(age)
        for xv, index, ages, where in frequency_groups(x, age):
            exact = partial(self._discount_sum, times, factors, xv)
            if interpolants is None:
                domain = (ages[0], ages[-1], ages.size)
                interpolant = _chebyshev_in_log(exact, domain, alpha)
            else:
                interpolant = interpolants[xv]
            drop[index] = _evaluate_in_log(interpolant, exact, ages, alpha)[where]
        first, denominator = self.purchase_factors(x, t_x, age)
        with np.errstate(all="ignore"):
            return first * drop / denominator

    def _discount_sum(self, times, factors, xv: float, ages: np.ndarray) -> np.ndarray:
        """D(x, T) = sum_k factors[k] (survival(t_(k-1)) - survival(t_k)) at each T of
        ``ages`` for one x, exactly (every step of the schedule)."""
        out = np.empty(ages.size)
        chunk = max(1, 1_000_000 // times.size)
        for start in range(0, ages.size, chunk):
            part = ages[start : start + chunk, None]
            survival = self.survival_units(times[None, :], xv, part)
            previous = np.concatenate([np.ones((part.shape[0], 1)), survival[:, :-1]], axis=1)
            out[start : start + chunk] = ((previous - survival) * factors).sum(axis=1)
        return out

    def discount_interpolants(
        self, times_units, factors, domains: dict[float, tuple[float, float, int]]
    ) -> dict[float, tuple[float, float, np.ndarray] | None]:
        """Per x of ``domains`` (:func:`age_domains`), the interpolant of D(x, T) that
        :meth:`discounted_purchases_units` builds for customers with that x and that range
        of T (None: exact sums), for ``interpolants=``. Its cost grows with the distinct
        frequencies, not with the customers."""
        times = np.asarray(times_units, dtype=float)
        factors = np.asarray(factors, dtype=float)
        alpha = self._time_shift()
        return {
            xv: _chebyshev_in_log(partial(self._discount_sum, times, factors, xv), domain, alpha)
            for xv, domain in domains.items()
        }

    def predict(self, summary: pl.DataFrame, *, horizon_days: float) -> np.ndarray:
        """Expected repeat purchases in the ``horizon_days`` days after the end of observation.

        One value per summary row (FHL 2005 eq. 10, the horizon converted to the model's unit).
        """
        self.check_fitted()
        frequency, recency, age = self.summary_arrays(summary)
        return self.expected_purchases_units(horizon_days / self.unit_days, frequency, recency, age)

    def predict_p_alive(self, summary: pl.DataFrame) -> np.ndarray:
        """P(alive | frequency, recency, T), one value per summary row (Hardie's note 021).

        It is 1 for customers without a repeat purchase: in the BG/NBD a customer can only drop
        out right after a purchase.
        """
        self.check_fitted()
        frequency, recency, age = self.summary_arrays(summary)
        # lifetimes' BetaGeoFitter.conditional_probability_alive, from ``params_`` rather than
        # the fitter's copy, so that a model scored under drawn parameters (the CLV interval)
        # moves with them
        r, alpha, a, b = (self.params_[name] for name in ("r", "alpha", "a", "b"))
        with np.errstate(all="ignore"):
            log_odds = (r + frequency) * np.log((alpha + age) / (alpha + recency)) + np.log(
                a / (b + np.maximum(frequency, 1) - 1)
            )
            values = np.where(frequency == 0, 1.0, 1.0 / (1.0 + np.exp(log_odds)))
        return np.clip(np.asarray(values, dtype=float), 0.0, 1.0)

    def predict_p_no_purchase(self, summary: pl.DataFrame, *, horizon_days: float) -> np.ndarray:
        """P(no purchase in the ``horizon_days`` days after the end of observation | x, t_x, T),
        one probability per summary row.

        A dead customer buys nothing; an alive one drops out only right after a purchase, so
        he buys nothing in (T, T + t] exactly when his Exponential(lambda) wait exceeds t, and
        given his history and being alive lambda ~ Gamma(r + x, alpha + T):
        P(0) = 1 - p_alive + p_alive * ((alpha + T) / (alpha + T + t))^(r + x).
        Unlike 1 - p_alive, which is 0 for every one-time buyer (the BG/NBD cannot see a
        dropout without a repeat purchase), it grows with the time since a one-time buyer's
        purchase, so it ranks them as churn risks.
        """
        self.check_fitted()
        frequency, _, age = self.summary_arrays(summary)
        r, alpha = self.params_["r"], self.params_["alpha"]
        t = horizon_days / self.unit_days
        p_alive = self.predict_p_alive(summary)
        waiting = np.exp((r + frequency) * (np.log(alpha + age) - np.log(alpha + age + t)))
        return np.clip(1.0 - p_alive + p_alive * waiting, 0.0, 1.0)

    def predict_median_days_to_next_purchase(self, summary: pl.DataFrame) -> np.ndarray:
        """Median days from the end of observation to the next purchase, given the customer is alive.

        In the BG/NBD a customer drops out only right after a purchase, so an alive customer's
        next purchase comes after an Exponential(lambda) wait, and given the history and being
        alive lambda ~ Gamma(r + x, alpha + T). The wait is then Lomax:
        P(wait > s) = ((alpha + T) / (alpha + T + s))^(r + x), whose median is
        (alpha + T) * (2^(1 / (r + x)) - 1). The median is used because the mean is infinite
        when r + x <= 1 (most one-time buyers).
        """
        self.check_fitted()
        frequency, _, age = self.summary_arrays(summary)
        r, alpha = self.params_["r"], self.params_["alpha"]
        shape = r + frequency
        return (alpha + age) * np.expm1(np.log(2.0) / shape) * self.unit_days

    def parameters_frame(self) -> pl.DataFrame:
        """Tidy parameters: model='bgnbd', parameter (r, alpha, a, b, penalizer), value, std_error."""
        self.check_fitted()
        return tidy_parameters(self.name, self.params_, self.std_errors_, self.penalizer_)

    def metrics_frame(self) -> pl.DataFrame:
        """Tidy fit metrics: model, metric, value, baseline (null)."""
        self.check_fitted()
        rows = [
            ("customers", float(self.n_customers_)),
            ("patterns", float(self.n_patterns_)),
            ("mean_neg_log_likelihood", self.neg_log_likelihood_),
            ("fit_attempts", float(len(self.fit_attempts_))),
        ]
        return tidy_metrics(self.name, [(metric, value, None) for metric, value in rows])


#: A parameter below this (in any unit) has run to the optimiser's lower bound of 0.
MIN_PARAMETER = 1e-6
#: A parameter above this is within a decade of the ladder's ceiling (DEFAULT_MAX_PARAMETER).
MAX_PARAMETER = 1e5
#: Below this :meth:`BetaGeoModel.dropout_share` the data show no identifiable dropout.
MIN_DROPOUT_SHARE = 1e-3


def degeneracy_reason(model: BetaGeoModel, max_age_units: float) -> str | None:
    """Why a converged customer-base fit must not be published, or None.

    Parameters
    ----------
    model : a fitted BetaGeoModel or candidate (params_, std_errors_, log_hessian, dropout_share)
    max_age_units : float
        The longest customer age T in the fitted summary, in the model's unit.

    Returns
    -------
    str or None
        "r=3e-07 is at its lower bound" (a parameter < MIN_PARAMETER or > MAX_PARAMETER);
        "no identifiable dropout (...)" (dropout_share < MIN_DROPOUT_SHARE, e.g. BG/NBD with
        a = 5e-7, b = 9e4: nobody ever drops out, so P(alive) says nothing); "the Hessian is
        not positive definite" (the optimum is a saddle or a ridge: the parameters are not
        identified and their standard errors do not exist).
    """
    for name, value in model.params_.items():
        if value < MIN_PARAMETER:
            return f"{name}={value:.3g} is at its lower bound"
        if value > MAX_PARAMETER:
            return f"{name}={value:.3g} is at its upper bound"
    share = model.dropout_share(float(max_age_units))
    if not share >= MIN_DROPOUT_SHARE:
        return f"no identifiable dropout (dropout share {share:.2g} < {MIN_DROPOUT_SHARE:g})"
    hessian = model.log_hessian()
    try:
        if not np.all(np.isfinite(hessian)):
            raise np.linalg.LinAlgError("non-finite")
        np.linalg.cholesky((hessian + hessian.T) / 2)
    except np.linalg.LinAlgError:
        return "the Hessian of the likelihood is not positive definite"
    return None


#: Chebyshev degrees tried in turn by :func:`_chebyshev_in_log`; the last failing means exact sums.
_CHEBYSHEV_DEGREES = (16, 32, 64, 128, 256)


def frequency_groups(
    frequency: np.ndarray, age: np.ndarray
) -> Iterator[tuple[float, np.ndarray, np.ndarray, np.ndarray]]:
    """Per distinct frequency x (ascending): (x, the indices of its customers, their
    distinct T sorted, and per customer the index of its T among those)."""
    values, inverse = np.unique(frequency, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(values.size + 1))
    for j, xv in enumerate(values):
        index = order[bounds[j] : bounds[j + 1]]
        ages, where = np.unique(age[index], return_inverse=True)
        yield float(xv), index, ages, where.reshape(-1)


def age_domains(frequency, age) -> dict[float, tuple[float, float, int]]:
    """Per distinct frequency x: (smallest T, largest T, number of distinct T) among the
    customers given, for :meth:`BetaGeoModel.discount_interpolants`."""
    frame = pl.DataFrame({"x": np.asarray(frequency, float), "T": np.asarray(age, float)})
    grouped = frame.group_by("x").agg(
        pl.col("T").min().alias("low"),
        pl.col("T").max().alias("high"),
        pl.col("T").n_unique().alias("n"),
    )
    return {float(x): (float(low), float(high), int(n)) for x, low, high, n in grouped.iter_rows()}


def _chebyshev_in_log(
    function: Callable[[np.ndarray], np.ndarray],
    domain: tuple[float, float, int],
    shift: float,
) -> tuple[float, float, np.ndarray] | None:
    """A Chebyshev interpolant in log(shift + point) of ``function`` (array to array) for
    the ``count`` distinct points in [first, last] (``domain``; see
    BetaGeoModel.discounted_purchases_units): (middle, half, coefficients), or None where
    the points are better computed exactly (few of them, or no degree converged)."""
    first, last, count = domain
    if count <= 2 * _CHEBYSHEV_DEGREES[0]:
        return None
    low, high = math.log(shift + first), math.log(shift + last)
    middle, half = (high + low) / 2, (high - low) / 2
    if not (math.isfinite(middle) and half > 1e-12 * max(1.0, abs(middle))):
        return None
    nodes_at = lambda u: np.maximum(np.exp(middle + half * u) - shift, 0.0)  # noqa: E731
    for degree in _CHEBYSHEV_DEGREES:
        if count <= degree + 1:
            break
        with np.errstate(all="ignore"):
            coefficients = np.polynomial.chebyshev.chebinterpolate(
                lambda u: function(nodes_at(u)), degree
            )
        scale = np.max(np.abs(coefficients))
        if np.all(np.isfinite(coefficients)) and np.max(np.abs(coefficients[-3:])) <= 1e-12 * scale:
            return middle, half, coefficients
    return None


def _evaluate_in_log(
    interpolant: tuple[float, float, np.ndarray] | None,
    function: Callable[[np.ndarray], np.ndarray],
    points: np.ndarray,
    shift: float,
) -> np.ndarray:
    """``function(points)`` from ``interpolant`` (:func:`_chebyshev_in_log`), or exactly
    where there is none."""
    if interpolant is None:
        return function(points)
    middle, half, coefficients = interpolant
    u = np.clip((np.log(shift + points) - middle) / half, -1.0, 1.0)
    return np.polynomial.chebyshev.chebval(u, coefficients)
