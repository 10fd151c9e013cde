"""The customer-base model candidates besides BG/NBD, and the choice among them.

:class:`ModifiedBetaGeoModel` (MBG/NBD, Batislam, Denizel & Filiztekin 2007) and
:class:`ParetoNBDModel` (Schmittlein, Morrison & Colombo 1987; Fader & Hardie's note 009 for
the formulas) have the interface of :class:`~models.clv.beta_geo.BetaGeoModel` (fit,
predict, predict_p_alive, predict_p_no_purchase, predict_median_days_to_next_purchase,
purchase_factors / survival_units / discounted_purchases_units for the CLV, parameters_frame,
metrics_frame), so :func:`~models.clv.predict.predict_customer_value`, the holdout check and
the churn baselines take any of them. :func:`choose_model` picks the published one from the
candidates' holdout errors.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize

from models.clv.beta_geo import BetaGeoModel
from models.clv.likelihood import ConvergenceError
from models.clv.pareto_likelihood import ParetoData, sorted_log_likelihood

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import lifetimes


class ModifiedBetaGeoModel(BetaGeoModel):
    """MBG/NBD (Batislam, Denizel & Filiztekin 2007): the BG/NBD where a customer may also drop
    out right after the first purchase (at time 0), so one-time buyers can be dead.

    Fitted with lifetimes' ModifiedBetaGeoFitter on the compressed summary; parameters r,
    alpha (model unit), a, b. Same constructor and attributes as BetaGeoModel.
    """

    name = "mbgnbd"
    label = "MBG/NBD"

    def _make_fitter(self, penalizer: float):
        return lifetimes.ModifiedBetaGeoFitter(penalizer_coef=penalizer)

    def _neg_log_likelihood(self, fitter) -> float:
        return float(fitter._negative_log_likelihood_)

    def _hyp_parameters(self, x):
        r, a, b = self.params_["r"], self.params_["a"], self.params_["b"]
        return r + x, b + x + 1, a + b + x

    def purchase_factors(self, frequency, recency, age):
        """E[Y(t) | x, t_x, T] = (a + b + x) / (a - 1) * (1 - survival(t)) /
        (1 + a / (b + x) ((alpha + T) / (alpha + t_x))^(r + x)) (lifetimes, Wagner & Hoppe
        2008), survival(t) = ((alpha + T) / (alpha + T + t))^(r + x)
        2F1(r + x, b + x + 1; a + b + x; t / (alpha + T + t)). Returns (first, denominator)."""
        r, alpha, a, b = (self.params_[name] for name in ("r", "alpha", "a", "b"))
        x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        with np.errstate(all="ignore"):
            first = (a + b + x) / (a - 1)
            denominator = 1 + a / (b + x) * ((alpha + age) / (alpha + t_x)) ** (r + x)
        return first, denominator

    def predict_p_alive(self, summary):
        """P(alive | x, t_x, T) = 1 / (1 + a / (b + x) ((alpha + T) / (alpha + t_x))^(r + x));
        below 1 for one-time buyers too."""
        self.check_fitted()
        frequency, recency, age = self.summary_arrays(summary)
        _, denominator = self.purchase_factors(frequency, recency, age)
        return np.clip(1.0 / denominator, 0.0, 1.0)

    def predict_p_no_purchase(self, summary, *, horizon_days: float) -> np.ndarray:
        """P(no purchase in the ``horizon_days`` days after the end of observation | x, t_x, T).

        As in the BG/NBD, an alive customer drops out only right after a purchase, so he buys
        nothing in (T, T + t] exactly when his Exponential(lambda) wait exceeds t; given his
        history and being alive (the likelihood factors as lambda^x e^(-lambda T) (1 - p)^(x+1))
        lambda ~ Gamma(r + x, alpha + T), hence
        P(0) = 1 - p_alive + p_alive ((alpha + T) / (alpha + T + t))^(r + x),
        with the MBG/NBD's p_alive.
        """
        return super().predict_p_no_purchase(summary, horizon_days=horizon_days)


class _ParetoNBDFitter(lifetimes.ParetoNBDFitter):
    """lifetimes' ParetoNBDFitter with a deterministic, faster optimiser.

    lifetimes minimises by Nelder-Mead from random start values (np.random) with tol 1e-4:
    8.6 s on CDNOW's 8,685 patterns and a different optimum per run. Here: BFGS in the
    log-parameters from lifetimes' mean start (all parameters 1 in its scaled time), on the
    same objective per unit weight (lifetimes' likelihood, computed by
    :mod:`models.clv.pareto_likelihood` with one Chebyshev interpolant of its 2F1 per
    distinct frequency: 4-5x faster on continuous times, equal within ~1e-13), and the
    Hessian in the log-parameters by central differences (lifetimes keeps none), for the
    standard errors and the degeneracy check.
    Only ``_fit`` is replaced; lifetimes' ``fit`` does the input checks, the time scaling and
    ``params_``.
    """

    def _fit(self, args, iterative_fitting, initial_params, params_size, disp, tol, *rest, **kw):
        frequency, recency, age, weights, penalizer = args
        # in frequency order, as the grouped likelihood keeps its customers
        data = ParetoData(frequency, recency, age)
        weights = np.asarray(weights, dtype=float)[data.order]
        total = weights.sum()

        def objective(log_params):
            params = np.exp(log_params)
            with np.errstate(all="ignore"):
                ll = sorted_log_likelihood(params, data)
            value = -float(np.dot(weights, ll)) / total + penalizer * float(np.sum(params**2))
            return value if np.isfinite(value) else np.inf

        x0 = np.zeros(params_size) if initial_params is None else np.log(initial_params)
        # eps: the forward-difference step of the gradient, above scipy's 1.5e-8 so that
        # the likelihood's ~1e-13 interpolation error moves the gradient by ~1e-6 only (at
        # 1.5e-8 BFGS wandered: 323 evaluations instead of 161 at 100k customers)
        output = minimize(objective, x0, method="BFGS", options={"gtol": 1e-7, "eps": 1e-7})
        if not np.all(np.isfinite(output.x)) or not np.isfinite(output.fun):
            raise ConvergenceError("The Pareto/NBD model did not converge.")
        # BFGS with numerical gradients often ends on "precision loss" at the optimum; what
        # matters is a small gradient, judged here
        step = 1e-5
        grad = np.array(
            [
                (objective(output.x + step * e) - objective(output.x - step * e)) / (2 * step)
                for e in np.eye(params_size)
            ]
        )
        if not np.max(np.abs(grad)) < 1e-4:
            raise ConvergenceError("The Pareto/NBD model did not converge.")
        self.log_hessian_ = _numerical_hessian(objective, output.x) * total
        self.neg_log_likelihood_ = float(output.fun)
        return np.exp(output.x), float(output.fun)


def _numerical_hessian(function, x: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian of a scalar ``function`` at ``x``."""
    n = x.size
    hessian = np.empty((n, n))
    eye = np.eye(n) * step
    f0 = function(x)
    for i in range(n):
        for j in range(i, n):
            if i == j:
                value = (function(x + eye[i]) - 2 * f0 + function(x - eye[i])) / step**2
            else:
                value = (
                    function(x + eye[i] + eye[j])
                    - function(x + eye[i] - eye[j])
                    - function(x - eye[i] + eye[j])
                    + function(x - eye[i] - eye[j])
                ) / (4 * step**2)
            hessian[i, j] = hessian[j, i] = value
    return hessian


#: Gauss-Legendre nodes and weights on [-1, 1] for the P(no purchase) integral of Pareto/NBD.
_LEGENDRE = np.polynomial.legendre.leggauss(48)


class ParetoNBDModel(BetaGeoModel):
    """Pareto/NBD (Schmittlein, Morrison & Colombo 1987): purchases at rate lambda ~
    Gamma(r, alpha) while alive, an Exponential(mu) lifetime, mu ~ Gamma(s, beta); a customer
    may die at any time, not only after a purchase.

    Parameters r, alpha, s, beta (alpha and beta in the model's unit); same constructor and
    attributes as BetaGeoModel, fitted by :class:`_ParetoNBDFitter` on the compressed summary
    (0.3 s on CDNOW's 23,570 customers in weeks).
    """

    name = "pareto_nbd"
    label = "Pareto/NBD"

    def _make_fitter(self, penalizer: float):
        return _ParetoNBDFitter(penalizer_coef=penalizer)

    def _standard_errors(self, fitter) -> dict[str, float]:
        # delta method in the log-parameters: se(p) = p * sqrt(diag(H^-1)), H the Hessian of
        # the total negative log-likelihood (scale-free in log space, so alpha and beta in
        # the model's unit get theirs by the same factor)
        with np.errstate(invalid="ignore"):
            try:
                variances = np.diag(np.linalg.inv(fitter.log_hessian_))
            except np.linalg.LinAlgError:
                variances = np.full(4, np.nan)
        return {
            name: float(value * np.sqrt(v)) if v > 0 else float("nan")
            for (name, value), v in zip(fitter.params_.items(), variances)
        }

    def log_hessian(self) -> np.ndarray:
        return np.asarray(self.fitter_.log_hessian_, dtype=float)

    def log_parameter_covariance(self) -> np.ndarray:
        """Asymptotic covariance of the log-parameters: inv(H), H the Hessian of the total
        negative log-likelihood (``log_hessian``); raises LinAlgError when H is singular."""
        return np.linalg.inv(self.log_hessian())

    def dropout_share(self, max_age_units: float) -> float:
        """Expected deaths per customer over the longest observed age at the mean death rate,
        (s / beta) * max T (dimensionless): ~0 means nobody is seen to die."""
        return self.params_["s"] / self.params_["beta"] * max_age_units

    def _time_shift(self) -> float:
        return self.params_["beta"]

    def _hyp_parameters(self, x):  # pragma: no cover - Pareto/NBD's survival has no 2F1
        raise NotImplementedError

    def survival_units(self, t_units, frequency, age) -> np.ndarray:
        """((beta + T) / (beta + T + t))^(s - 1): the part of E[Y(t) | x, t_x, T] that
        changes with t (note 009 eq. 41); 1 at t = 0. Depends only on T."""
        s, beta = self.params_["s"], self.params_["beta"]
        t, _, age = np.broadcast_arrays(
            *(np.asarray(v, dtype=float) for v in (t_units, frequency, age))
        )
        with np.errstate(all="ignore"):
            return np.exp((s - 1) * (np.log(beta + age) - np.log(beta + age + t)))

    def purchase_factors(self, frequency, recency, age):
        """Note 009 eq. 41: E[Y(t) | x, t_x, T] = P(alive) (r + x) (beta + T) /
        ((alpha + T) (s - 1)) * (1 - survival(t)); returned as (first, denominator) with
        first = (r + x)(beta + T) / ((alpha + T)(s - 1)) and denominator = 1 / P(alive)."""
        r, alpha, s, beta = (self.params_[name] for name in ("r", "alpha", "s", "beta"))
        x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, age))
        with np.errstate(all="ignore"):
            first = (r + x) * (beta + age) / ((alpha + age) * (s - 1))
            p_alive = self._p_alive_units(x, t_x, age)
        return first, 1.0 / p_alive

    def _p_alive_units(self, x, t_x, age) -> np.ndarray:
        # lifetimes' conditional_probability_alive (note 009 eq. 36-37), from ``params_``
        # rather than the fitter's own copy: the CLV interval scores this model under drawn
        # parameters (models/clv/uncertainty.py), and P(alive) must move with them
        r, alpha, s, beta = (self.params_[name] for name in ("r", "alpha", "s", "beta"))
        x, t_x, age = (np.asarray(v, dtype=float) for v in (x, t_x, age))
        with np.errstate(all="ignore"):
            log_a0 = lifetimes.ParetoNBDFitter._log_A_0([r, alpha, s, beta], x, t_x, age)
            values = 1.0 / (
                1.0
                + np.exp(
                    np.log(s)
                    - np.log(r + s + x)
                    + (r + x) * np.log(alpha + age)
                    + s * np.log(beta + age)
                    + log_a0
                )
            )
        return np.clip(np.asarray(values, dtype=float), 0.0, 1.0)

    def predict_p_alive(self, summary):
        """P(alive | x, t_x, T), note 009 eq. 36-37 (lifetimes' conditional_probability_alive)."""
        self.check_fitted()
        return self._p_alive_units(*self.summary_arrays(summary))

    def predict_p_no_purchase(self, summary, *, horizon_days: float) -> np.ndarray:
        """P(no purchase in the ``horizon_days`` days after the end of observation | x, t_x, T).

        Alive at T with rates lambda, mu: he buys nothing in (T, T + t] when his next purchase
        wait P ~ Exp(lambda) exceeds min(D, t), D ~ Exp(mu) his remaining life. Given his
        history and being alive, lambda ~ Gamma(r + x, alpha + T) and mu ~ Gamma(s, beta + T),
        independent (the likelihood of an alive customer is lambda^x e^(-(lambda + mu) T)).
        So, with L(u) = ((alpha + T) / (alpha + T + u))^(r + x) = E[e^(-lambda u)],
        P(0 | alive) = L(t) ((beta + T) / (beta + T + t))^s
                       + integral_0^t s (beta + T)^s / (beta + T + u)^(s + 1) L(u) du
        (death at u before any purchase, plus neither by t), and
        P(0) = 1 - p_alive + p_alive P(0 | alive). The integral is taken by 48-point
        Gauss-Legendre in log(min(alpha, beta) + T + u), where the integrand is smooth.
        """
        self.check_fitted()
        x, t_x, age = self.summary_arrays(summary)
        r, alpha, s, beta = (self.params_[name] for name in ("r", "alpha", "s", "beta"))
        # one horizon for all, or one per customer (the next-order date bisects on it)
        t = np.broadcast_to(np.asarray(horizon_days, dtype=float) / self.unit_days, x.shape)
        p_alive = self._p_alive_units(x, t_x, age)
        shift = min(alpha, beta) + age[:, None]
        low, high = np.log(shift), np.log(shift + t[:, None])
        nodes, weights = _LEGENDRE
        w = (high + low) / 2 + (high - low) / 2 * nodes[None, :]
        u = np.exp(w) - shift
        rx = (r + x)[:, None]
        with np.errstate(all="ignore"):
            log_l = rx * (np.log(alpha + age[:, None]) - np.log(alpha + age[:, None] + u))
            log_death = (
                np.log(s)
                + s * np.log(beta + age[:, None])
                - (s + 1) * np.log(beta + age[:, None] + u)
            )
            # du = (shift + u) dw
            integral = ((high - low) / 2)[:, 0] * np.sum(
                weights[None, :] * np.exp(log_l + log_death) * (shift + u), axis=1
            )
            neither = np.exp(
                (r + x) * (np.log(alpha + age) - np.log(alpha + age + t))
                + s * (np.log(beta + age) - np.log(beta + age + t))
            )
        return np.clip(1.0 - p_alive + p_alive * (neither + integral), 0.0, 1.0)

    def predict_median_days_to_next_purchase(self, summary) -> np.ndarray:
        """Median days to the next purchase of a customer who stays alive: his purchase wait
        is Exponential(lambda), lambda ~ Gamma(r + x, alpha + T) given history and alive, so
        (alpha + T)(2^(1 / (r + x)) - 1) as in the BG/NBD (in the Pareto/NBD he may also die
        first; the date answers "if they are still a customer")."""
        return super().predict_median_days_to_next_purchase(summary)


#: The candidates from the simplest to the most complex: a tie goes to the earlier.
CANDIDATES: tuple[type[BetaGeoModel], ...] = (BetaGeoModel, ModifiedBetaGeoModel, ParetoNBDModel)
CANDIDATE_BY_NAME = {candidate.name: candidate for candidate in CANDIDATES}

#: Holdout MAEs within this relative distance of the lowest are a tie.
TIE_RELATIVE_MAE = 0.01


def choose_model(holdout_mae: dict[str, float | None]) -> tuple[str, str]:
    """The published candidate from the holdout MAEs of repeat purchases per customer.

    Parameters
    ----------
    holdout_mae : dict
        Candidate name (``bgnbd``, ``mbgnbd``, ``pareto_nbd``) -> holdout MAE (repeat
        purchases per customer), or None for a candidate that failed or was rejected.

    Returns
    -------
    (name, reason) : the chosen candidate and a sentence saying why. The lowest MAE wins; any
    candidate within ``TIE_RELATIVE_MAE`` (1%) of it ties, and a tie goes to the simplest
    (BG/NBD < MBG/NBD < Pareto/NBD). Raises ValueError when no candidate has an MAE.
    """
    scored = {n: v for n, v in holdout_mae.items() if v is not None and np.isfinite(v)}
    if not scored:
        raise ValueError("no candidate has a holdout MAE")
    best = min(scored.values())
    order = [c.name for c in CANDIDATES if c.name in scored]
    tied = [n for n in order if scored[n] <= best * (1 + TIE_RELATIVE_MAE)]
    chosen = tied[0]
    label = CANDIDATE_BY_NAME[chosen].label
    listed = ", ".join(f"{CANDIDATE_BY_NAME[n].label} {scored[n]:.4g}" for n in order)
    if len(tied) > 1:
        reason = f"{label} chosen: holdout MAE within 1% of the lowest, and the simplest ({listed})"
    else:
        reason = f"{label} chosen: lowest holdout MAE ({listed})"
    return chosen, reason
