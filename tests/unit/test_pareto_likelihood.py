"""Tests for models/clv/pareto_likelihood.py: the grouped Pareto/NBD likelihood equals
lifetimes' per-customer one, and it evaluates 2F1 per frequency, not per customer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import gammaln, hyp2f1

from models.clv import pareto_likelihood
from models.clv.pareto_likelihood import ParetoData, log_hyp2f1_by_group, pareto_log_likelihood

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import lifetimes

# (r, alpha, s, beta): CDNOW's published fit, alpha < beta and alpha > beta, extremes
PARAMETERS = [
    (0.55, 10.58, 0.61, 11.67),
    (1.24, 13.97, 1.43, 94.5),
    (2.0, 50.0, 0.8, 10.0),
    (1.0, 1.0, 1.0, 1.0),
    (0.05, 0.5, 3.0, 400.0),
]


def _customers(n: int = 20_000, seed: int = 7):
    """Continuous-time customers as a million-row warehouse has them: one distinct
    (x, t_x, T) each, many with x = 0 (t_x = 0), a few with t_x = T, and a long tail of
    frequencies with only a handful of customers each."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(1.0, 78.0, n)
    rate = rng.gamma(0.6, 1 / 4.0, n)
    x = rng.poisson(rate * age).astype(float)
    x[: n // 50] = rng.integers(60, 200, n // 50)  # the tail: small groups
    t_x = np.where(x > 0, age * rng.beta(3.0, 1.0, n), 0.0)
    at_end = np.flatnonzero(x > 0)[::200]  # the last purchase at the end of the period
    t_x[at_end] = age[at_end]
    order = rng.permutation(n)  # not in frequency order
    return x[order], t_x[order], age[order]


@pytest.fixture(scope="module")
def customers():
    return _customers()


@pytest.mark.parametrize("params", PARAMETERS)
def test_equals_lifetimes_per_customer(customers, params):
    x, t_x, age = customers
    with np.errstate(all="ignore"):  # lifetimes' NaN rows warn
        expected = lifetimes.ParetoNBDFitter._conditional_log_likelihood(params, x, t_x, age)
    got = pareto_log_likelihood(params, ParetoData(x, t_x, age))
    # lifetimes overflows (2F1 to inf) for a few very frequent customers at extreme
    # parameters; elsewhere both are finite and equal
    before_end = t_x < age
    finite = np.isfinite(expected) & before_end
    assert finite.sum() > 0.99 * before_end.sum()
    assert np.isfinite(got[finite]).all()
    relative = np.abs(got - expected)[finite] / np.maximum(1.0, np.abs(expected[finite]))
    assert relative.max() < 1e-12


@pytest.mark.parametrize("params", PARAMETERS[:4])
def test_last_purchase_at_the_end(customers, params):
    """Where t_x = T the difference of the two 2F1 terms is 0 and the likelihood is the
    first term alone; lifetimes' signed logsumexp sometimes gives NaN there, the grouped
    likelihood never does."""
    x, t_x, age = customers
    r, alpha, s, beta = params
    at_end = t_x == age
    assert at_end.sum() >= 10
    got = pareto_log_likelihood(params, ParetoData(x, t_x, age))[at_end]
    xe, te = x[at_end], age[at_end]
    expected = (
        gammaln(r + xe)
        - gammaln(r)
        + r * np.log(alpha)
        + s * np.log(beta)
        - (r + xe) * np.log(alpha + te)
        - s * np.log(beta + te)
    )
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-12


def test_interpolant_equals_scipy_and_needs_few_values(customers, monkeypatch):
    x, t_x, age = customers
    data = ParetoData(x, t_x, age)
    r, alpha, s, beta = PARAMETERS[1]
    a, b = r + s + data.values, r + data.values
    evaluated = []

    def counting(*args):
        values = hyp2f1(*args)
        evaluated.append(np.size(values))
        return values

    monkeypatch.setattr(pareto_likelihood, "hyp2f1", counting)
    got = log_hyp2f1_by_group(data, a, b, beta, beta - alpha, "age")
    monkeypatch.undo()
    a_each, b_each = r + s + data.x, r + data.x
    expected = np.log(hyp2f1(a_each, b_each, a_each + 1, (beta - alpha) / (beta + data.age)))
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-12
    # 16 nodes for each frequency plus the small groups' customers, far fewer than one
    # value per customer: the reason the module exists
    small = sum(n for n in np.diff(data.bounds) if n < pareto_likelihood.MIN_GROUP)
    assert sum(evaluated) < pareto_likelihood.NODES * data.values.size + small + x.size // 10
    assert sum(evaluated) < x.size // 2


def test_groups_keep_the_given_order(customers):
    x, t_x, age = customers
    data = ParetoData(x, t_x, age)
    assert np.array_equal(data.unsorted(data.x), x)
    assert np.array_equal(data.unsorted(data.age), age)
    # one customer alone is its own group and gets scipy's value
    params = PARAMETERS[0]
    one = pareto_log_likelihood(params, ParetoData(x[:1], t_x[:1], age[:1]))
    expected = lifetimes.ParetoNBDFitter._conditional_log_likelihood(
        params, x[:1], t_x[:1], age[:1]
    )
    assert one == pytest.approx(expected, rel=1e-13)
