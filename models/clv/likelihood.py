"""The closed-form likelihoods the lifetimes fitters minimise, and the optimiser.

BG/NBD and Gamma-Gamma mean negative log-likelihoods with their gradient and Hessian in the
log-parameters (:class:`_BetaGeoLikelihood`, :class:`_GammaGammaLikelihood`), the optimiser
with its Newton polish (:func:`_minimize_likelihood`), and the lifetimes fitter subclasses
that use them (:class:`BetaGeoFitter`, :class:`GammaGammaFitter`).

This is the only project module that imports ``lifetimes``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, polygamma

with warnings.catch_warnings():
    # lifetimes sets a pandas option pandas 3 deprecates, and installs a global FutureWarning
    # filter on import; catch_warnings keeps both from leaking into the rest of the process.
    warnings.simplefilter("ignore")
    import lifetimes
    from lifetimes.utils import ConvergenceError


# lifetimes fits by BFGS on its likelihoods written for autograd, which traces every array
# operation in Python and builds the Hessian from nested traces (1.5-2 s per BG/NBD fit on
# 100,000 customers, 10x that on 1M). The subclasses below keep lifetimes' fit() (time
# scaling, start values, optimiser, tolerance, ConvergenceError, params_, standard errors)
# and replace only what it minimises with: the same mean negative log-likelihood, its
# gradient and its Hessian in the log-parameters in closed form. Terms that depend on a
# customer only through the frequency (the gamma functions) are summed once per distinct
# frequency, so each evaluation costs a few array operations per customer.


def _dot(a, b) -> float:
    # not np.dot: OpenBLAS' threaded ddot is 100x slower than a plain loop when the cores are busy
    return float(np.einsum("i,i->", a, b))


def _log_parameter_derivatives(params, value, grad, hess, penalizer):
    """Objective, gradient and Hessian in log-parameters from the log-likelihood sum's
    ``value``, gradient ``grad`` and Hessian ``hess`` in the parameters (already divided by
    the total weight and negated), plus lifetimes' ``penalizer * sum(params ** 2)``."""
    grad = grad + 2.0 * penalizer * params
    hess = hess + 2.0 * penalizer * np.eye(params.size)
    objective = value + penalizer * float(np.sum(params**2))
    return (
        objective,
        params * grad,
        params[:, None] * hess * params[None, :] + np.diag(params * grad),
    )


#: Customers per block of the likelihood's array operations (256 KiB per temporary).
_LIKELIHOOD_BLOCK = 32_768


def _weight_per_frequency(
    frequency: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct frequencies and the total weight of each: the likelihoods' gamma-function
    terms depend on a customer only through the frequency, so they are summed once per value."""
    values, inverse = np.unique(frequency, return_inverse=True)
    return values, np.bincount(inverse.reshape(-1), weights=weights, minlength=values.size)


class _BetaGeoLikelihood:
    """lifetimes' BetaGeoFitter._negative_log_likelihood (FHL 2005 section 7) with its
    gradient and Hessian in the log-parameters (log r, log alpha, log a, log b).

    Per customer: A1 + A2 + logaddexp(A3, A4 if x > 0), A1 = lnG(r + x) - lnG(r) + r ln alpha,
    A2 = lnB-terms of (a, b, x), A3 = -(r + x) ln(alpha + T), A4 = ln a - ln(b + x - 1) -
    (r + x) ln(alpha + t_x); weighted mean over customers, negated.
    """

    def __init__(self, frequency, recency, age, weights, penalizer):
        x = np.asarray(frequency, dtype=float)
        w = np.asarray(weights, dtype=float)
        self.penalizer = float(penalizer)
        self.total = float(w.sum())
        self.xs, self.wx = _weight_per_frequency(x, w)
        once = x == 0
        self.w0, self.age0 = w[once], np.asarray(age, dtype=float)[once]
        repeat = ~once
        self.x1, self.w1 = x[repeat], w[repeat]
        self.xs1, ix1 = np.unique(self.x1, return_inverse=True)
        self.ix1 = ix1.reshape(-1)
        self.rec1, self.age1 = (
            np.asarray(recency, dtype=float)[repeat],
            np.asarray(age, dtype=float)[repeat],
        )

    def _rising(self, c: float):
        """lnG(c + x) - lnG(c), psi(c + x) - psi(c), psi'(c + x) - psi'(c) for each distinct x:
        sums over i < x of ln(c + i), 1 / (c + i), -1 / (c + i)^2 while the frequencies are
        moderate (exact where the differences of lnG cancel, e.g. c ~ 1e7 when nobody drops
        out), else scipy's functions."""
        xs = self.xs
        if xs[-1] <= 100_000:
            terms = c + np.arange(int(xs[-1]), dtype=float)
            index = xs.astype(np.intp)
            return tuple(
                np.concatenate([[0.0], np.cumsum(v)])[index]
                for v in (np.log(terms), 1.0 / terms, -1.0 / terms**2)
            )
        return (
            gammaln(c + xs) - gammaln(c),
            digamma(c + xs) - digamma(c),
            polygamma(1, c + xs) - polygamma(1, c),
        )

    def _one_time_buyers(self, rows: slice, r, alpha, g, h, hessian: bool) -> float:
        """A3 = -r ln(alpha + T) of the one-time buyers in ``rows``: adds to g (and h), returns
        the sum."""
        w0, age0 = self.w0[rows], self.age0[rows]
        log_age0 = np.log(alpha + age0)
        inv_age0 = 1.0 / (alpha + age0)
        sum_log = _dot(w0, log_age0)
        g[0] -= sum_log
        g[1] -= r * _dot(w0, inv_age0)
        if hessian:
            h[0, 1] -= _dot(w0, inv_age0)
            h[1, 1] += r * _dot(w0, inv_age0**2)
        return -r * sum_log

    def _repeat_buyers(self, rows: slice, r, alpha, a, inv_bx_x, g, h, hessian: bool) -> float:
        """logaddexp(A3, A4) of the repeat buyers in ``rows``: adds to g (and h), returns the sum."""
        x1, w1 = self.x1[rows], self.w1[rows]
        age1, rec1 = self.age1[rows], self.rec1[rows]
        # logaddexp = max + log1p(e), e = exp(-|A4 - A3|), and the weight of A4 in its
        # derivatives p4 = expit(A4 - A3), both from the same e
        rx = r + x1
        log_age1, log_rec1 = np.log(alpha + age1), np.log(alpha + rec1)
        inv_bx = inv_bx_x[self.ix1[rows]]
        a3 = -rx * log_age1
        a4 = (np.log(a) + np.log(inv_bx)) - rx * log_rec1
        diff = a4 - a3
        e = np.exp(-np.abs(diff))
        value = _dot(w1, np.maximum(a3, a4) + np.log1p(e))
        q = 1.0 / (1.0 + e)
        p4 = np.where(diff > 0, q, e * q)
        inv_age1, inv_rec1 = 1.0 / (alpha + age1), 1.0 / (alpha + rec1)
        d3r, d4r = -log_age1, -log_rec1
        d3al, d4al = -rx * inv_age1, -rx * inv_rec1
        wp4 = w1 * p4
        dr, dal = d3r - d4r, d3al - d4al
        g[0] += _dot(w1, d3r - p4 * dr)
        g[1] += _dot(w1, d3al - p4 * dal)
        g[2] += float(np.sum(wp4)) / a
        g[3] -= _dot(wp4, inv_bx)
        if hessian:
            # logaddexp: p3 H3 + p4 H4 + p3 p4 (grad3 - grad4)(grad3 - grad4)'
            p3 = 1.0 - p4
            v = w1 * p3 * p4
            inv_a = 1.0 / a
            h[0, 0] += _dot(v, dr * dr)
            h[0, 1] += _dot(w1, -p3 * inv_age1 - p4 * inv_rec1) + _dot(v, dr * dal)
            h[1, 1] += _dot(w1, p3 * rx * inv_age1**2 + p4 * rx * inv_rec1**2) + _dot(v, dal * dal)
            h[0, 2] += -inv_a * float(np.sum(v * dr))
            h[0, 3] += _dot(v, dr * inv_bx)
            h[1, 2] += -inv_a * float(np.sum(v * dal))
            h[1, 3] += _dot(v, dal * inv_bx)
            h[2, 2] += (float(np.sum(v)) - float(np.sum(wp4))) * inv_a**2
            h[2, 3] += -inv_a * _dot(v, inv_bx)
            h[3, 3] += _dot(wp4 + v, inv_bx**2)
        return value

    def __call__(self, log_params, *, hessian: bool = False):
        params = np.exp(np.asarray(log_params, dtype=float))
        r, alpha, a, b = params
        wx = self.wx
        W = self.total
        # per distinct frequency: A1 + A2 and their derivatives, from the rising factorials
        # lnG(c + x) - lnG(c) and their derivatives in c
        lg_r, psi_r, tri_r = self._rising(r)
        lg_b, psi_b, tri_b = self._rising(b)
        lg_ab, psi_ab, tri_ab = self._rising(a + b)
        value = float(np.sum(wx * (lg_r + r * np.log(alpha) + lg_b - lg_ab)))
        g = np.array(
            [
                np.sum(wx * (psi_r + np.log(alpha))),
                np.sum(wx) * r / alpha,
                -np.sum(wx * psi_ab),
                np.sum(wx * (psi_b - psi_ab)),
            ]
        )
        h = np.zeros((4, 4))
        if hessian:
            h[0, 0] = np.sum(wx * tri_r)
            h[0, 1] = np.sum(wx) / alpha
            h[1, 1] = -np.sum(wx) * r / alpha**2
            h[2, 2] = h[2, 3] = -np.sum(wx * tri_ab)
            h[3, 3] = np.sum(wx * (tri_b - tri_ab))
        # the per-customer terms block by block, so that the temporaries stay in the cache
        for start in range(0, self.age0.size, _LIKELIHOOD_BLOCK):
            value += self._one_time_buyers(
                slice(start, start + _LIKELIHOOD_BLOCK), r, alpha, g, h, hessian
            )
        inv_bx_x = 1.0 / (b + self.xs1 - 1.0)
        for start in range(0, self.x1.size, _LIKELIHOOD_BLOCK):
            value += self._repeat_buyers(
                slice(start, start + _LIKELIHOOD_BLOCK), r, alpha, a, inv_bx_x, g, h, hessian
            )
        if not hessian:
            objective, grad, _ = _log_parameter_derivatives(
                params, -value / W, -g / W, h, self.penalizer
            )
            return objective, grad
        h = np.triu(h) + np.triu(h, 1).T
        return _log_parameter_derivatives(params, -value / W, -g / W, -h / W, self.penalizer)


class _GammaGammaLikelihood:
    """lifetimes' GammaGammaFitter._negative_log_likelihood (Hardie note 025, eq. 1a) with
    its gradient and Hessian in (log p, log q, log gamma).

    Per customer: lnG(px + q) - lnG(px) - lnG(q) + q ln v + (px - 1) ln m + px ln x -
    (px + q) ln(xm + v); weighted mean, negated.
    """

    def __init__(self, frequency, monetary_value, weights, penalizer):
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        w = np.asarray(weights, dtype=float)
        self.penalizer = float(penalizer)
        self.total = float(w.sum())
        self.xs, self.wx = _weight_per_frequency(x, w)
        self.x, self.m, self.w, self.wxm = x, m, w, w * x
        log_m = np.log(m)
        self.sum_w_log_m = float(_dot(w, log_m))
        self.sum_wx_log_m = float(_dot(self.wxm, log_m))
        self.sum_wx_log_x = float(_dot(self.wx, self.xs * np.log(self.xs)))

    def __call__(self, log_params, *, hessian: bool = False):
        params = np.exp(np.asarray(log_params, dtype=float))
        p, q, v = params
        xs, wx, W = self.xs, self.wx, self.total
        pxq, px = p * xs + q, p * xs
        log_xmv = np.log(self.x * self.m + v)
        s_w_l, s_wx_l = float(_dot(self.w, log_xmv)), float(_dot(self.wxm, log_xmv))
        value = (
            float(np.sum(wx * (gammaln(pxq) - gammaln(px))))
            - W * gammaln(q)
            + W * q * np.log(v)
            + p * self.sum_wx_log_m
            - self.sum_w_log_m
            + p * self.sum_wx_log_x
            - p * s_wx_l
            - q * s_w_l
        )
        inv_xmv = 1.0 / (self.x * self.m + v)
        s_w_i, s_wx_i = float(_dot(self.w, inv_xmv)), float(_dot(self.wxm, inv_xmv))
        psi_pxq = digamma(pxq)
        g = np.array(
            [
                float(np.sum(wx * xs * (psi_pxq - digamma(px))))
                + self.sum_wx_log_m
                + self.sum_wx_log_x
                - s_wx_l,
                float(np.sum(wx * psi_pxq)) - W * digamma(q) + W * np.log(v) - s_w_l,
                W * q / v - p * s_wx_i - q * s_w_i,
            ]
        )
        if not hessian:
            objective, grad, _ = _log_parameter_derivatives(
                params, -value / W, -g / W, np.zeros((3, 3)), self.penalizer
            )
            return objective, grad
        tri_pxq = polygamma(1, pxq)
        inv2 = inv_xmv**2
        h = np.empty((3, 3))
        h[0, 0] = float(np.sum(wx * xs**2 * (tri_pxq - polygamma(1, px))))
        h[0, 1] = h[1, 0] = float(np.sum(wx * xs * tri_pxq))
        h[0, 2] = h[2, 0] = -s_wx_i
        h[1, 1] = float(np.sum(wx * tri_pxq)) - W * polygamma(1, q)
        h[1, 2] = h[2, 1] = W / v - s_w_i
        h[2, 2] = -W * q / v**2 + p * float(_dot(self.wxm, inv2)) + q * float(_dot(self.w, inv2))
        return _log_parameter_derivatives(params, -value / W, -g / W, -h / W, self.penalizer)


def _minimize_likelihood(likelihood, initial_params, params_size, disp, tol, bounds, **kwargs):
    """lifetimes' BaseFitter._fit (same start, optimiser, tolerance and failure) on a
    closed-form likelihood: (log-parameters, mean negative log-likelihood, Hessian).

    Near the optimum BFGS' line search can stop on rounding ("precision loss") before the
    gradient is below ``tol``, by luck of the last bits (lifetimes' autograd version as well).
    Such a stop, or any other, is then finished with Newton steps on the exact Hessian and
    accepted only where the gradient is below ``tol`` and the Hessian positive definite.
    """
    options = {"disp": disp}
    options.update(kwargs)
    x0 = 0.1 * np.ones(params_size) if initial_params is None else initial_params
    output = minimize(
        likelihood, jac=True, method=None, tol=tol, x0=x0, options=options, bounds=bounds
    )
    x = (
        output.x
        if output.success or bounds is not None
        else _newton_polish(likelihood, output.x, tol)
    )
    if x is None or not output.success and bounds is not None:
        raise ConvergenceError(
            "The model did not converge. Try adding a larger penalizer to see if that helps convergence."
        )
    value, _, hess = likelihood(x, hessian=True)
    return x, (output.fun if x is output.x else value), hess


def _newton_polish(likelihood, x, tol, steps: int = 10):
    """Newton's method from ``x``; the point once max |gradient| <= ``tol`` at a positive
    definite Hessian, else None."""
    x = np.asarray(x, dtype=float)
    for _ in range(steps):
        if not np.all(np.isfinite(x)):
            return None
        value, grad, hess = likelihood(x, hessian=True)
        if not (np.isfinite(value) and np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
            return None
        try:
            np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            return None
        if np.max(np.abs(grad)) <= tol:
            return x
        x = x - np.linalg.solve(hess, grad)
    return None


# The two subclasses below are the only place that reaches into lifetimes' internals. lifetimes
# is archived at 0.11.3 and pinned; tests/unit/test_clv.py pins what they rely on
# (test_lifetimes_internals_the_fitter_subclasses_rely_on_are_there) and that they fit what
# plain lifetimes fits (test_fitter_subclasses_fit_what_plain_lifetimes_fits).


class _ClosedFormObjective:
    """The ``_fit`` hook both fitters below override: minimise the closed-form likelihood
    ``_likelihood(*minimizing_function_args)`` (value, gradient, Hessian) instead of
    lifetimes' autograd objective, and keep the minimum as ``neg_log_likelihood_``."""

    _likelihood: type

    def _fit(
        self,
        minimizing_function_args,
        initial_params,
        params_size,
        disp,
        tol=1e-7,
        bounds=None,
        **kwargs,
    ):
        log_params, value, hessian = _minimize_likelihood(
            self._likelihood(*minimizing_function_args),
            initial_params,
            params_size,
            disp,
            tol,
            bounds,
            **kwargs,
        )
        self.neg_log_likelihood_ = float(value)
        return log_params, value, hessian


class BetaGeoFitter(_ClosedFormObjective, lifetimes.BetaGeoFitter):
    """lifetimes' BetaGeoFitter minimising :class:`_BetaGeoLikelihood` instead of its autograd one.

    Only the objective changes; the rest is lifetimes' own ``BetaGeoFitter.fit``: input checks,
    time scaling, start values, tolerance, ConvergenceError, ``params_``, ``standard_errors_``,
    and every prediction method.

    lifetimes 0.11.3 internals relied on, and why:

    - ``BetaGeoFitter.fit`` obtains its optimum from the private hook
      ``self._fit(minimizing_function_args, initial_params, params_size, disp, tol, bounds,
      **kwargs)`` of ``lifetimes.fitters.BaseFitter`` and unpacks the result as ``(log_params,
      self._negative_log_likelihood_, self._hessian_)``. Overriding ``_fit`` is the one way to
      change what is minimised without copying ``fit``.
    - ``minimizing_function_args`` is ``(frequency, recency * scale, T * scale, weights,
      penalizer_coef)`` (``scale = lifetimes.utils._scale_time(T)``), the arguments of
      :class:`_BetaGeoLikelihood`.
    - What lifetimes minimises is ``BetaGeoFitter._negative_log_likelihood(log_params,
      *minimizing_function_args)``: the weighted mean negative log-likelihood plus
      ``penalizer_coef * sum(params ** 2)``, in (log r, log alpha, log a, log b).
      :class:`_BetaGeoLikelihood` computes the same value with its gradient and Hessian.
    - The returned Hessian becomes ``_hessian_``, which ``BaseFitter._compute_variance_matrix``
      turns into ``variance_matrix_`` and ``standard_errors_``; so it must be the Hessian of
      that mean objective in the log-parameters.

    Attributes
    ----------
    neg_log_likelihood_ : float
        The minimised objective (mean negative log-likelihood per unit weight, penalty
        included); lifetimes keeps the same number in its private ``_negative_log_likelihood_``.
    """

    _likelihood = _BetaGeoLikelihood


class GammaGammaFitter(_ClosedFormObjective, lifetimes.GammaGammaFitter):
    """lifetimes' GammaGammaFitter minimising :class:`_GammaGammaLikelihood` instead of its autograd one.

    Only the objective changes; the rest is lifetimes' own ``GammaGammaFitter.fit``: input
    checks, start values, tolerance, ConvergenceError, ``params_`` (p, q, v),
    ``standard_errors_`` and the prediction methods.

    lifetimes 0.11.3 internals relied on, and why:

    - ``GammaGammaFitter.fit`` obtains its optimum from the private hook
      ``self._fit(minimizing_function_args, initial_params, params_size, disp, tol=tol,
      bounds=bounds, **kwargs)`` of ``lifetimes.fitters.BaseFitter`` (``bounds`` only with
      ``q_constraint=True``) and unpacks the result as ``(log_params,
      self._negative_log_likelihood_, self._hessian_)``. Overriding ``_fit`` is the one way to
      change what is minimised without copying ``fit``.
    - ``minimizing_function_args`` is ``(frequency, monetary_value, weights, penalizer_coef)``,
      the arguments of :class:`_GammaGammaLikelihood`.
    - What lifetimes minimises is ``GammaGammaFitter._negative_log_likelihood(log_params,
      *minimizing_function_args)``: the weighted mean negative log-likelihood plus
      ``penalizer_coef * sum(params ** 2)``, in (log p, log q, log v).
      :class:`_GammaGammaLikelihood` computes the same value with its gradient and Hessian.
    - The returned Hessian becomes ``_hessian_``, which ``BaseFitter._compute_variance_matrix``
      turns into ``standard_errors_``.

    Attributes
    ----------
    neg_log_likelihood_ : float
        The minimised objective, as in :class:`BetaGeoFitter`.
    """

    _likelihood = _GammaGammaLikelihood
