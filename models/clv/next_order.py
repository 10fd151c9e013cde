"""Next order: P(order within H days), the next order date, their naive rules and their scores.

Written against the customer-base model interface (BG/NBD, MBG/NBD or Pareto/NBD):
``model.predict_p_no_purchase(summary, horizon_days=...)``, where ``horizon_days`` may be one
number or one per summary row. Nothing here reads a model's parameters.

- :func:`predict_order_probabilities`: ``p_order_next_<h>d`` = 1 - P(no purchase in h days);
- :func:`predict_next_order_offsets`: days from the end of observation to the next order date;
- :func:`naive_order_probabilities`: the naive rules the probabilities are scored against;
- :func:`harrell_c`: Harrell's concordance index with censoring, O(n log n);
- :func:`score_next_order`: Brier scores, MAE and Harrell's C against the naive rules on a
  holdout window, the verdict per quantity and which source is published.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from models.clv.fitting import tidy_metrics

#: model name of the verdict rows in models.model_metrics (as churn's 'churn_verdict')
VERDICT_MODEL = "next_order_verdict"
#: the quantity names of the verdict rows for the next order date
DATE_QUANTITY = "expected_next_order_date"
#: the naive rules for P(order within H days), by name (see naive_order_probabilities)
NAIVE_RULES = ("rate_rule", "recent_share")
#: two-sided 95% normal quantile of the paired intervals
_Z95 = 1.959963984540054


def order_probability_column(horizon_days: int) -> str:
    """The column name of P(order within ``horizon_days`` days): ``p_order_next_<h>d``."""
    return f"p_order_next_{int(horizon_days)}d"


def predict_order_probabilities(
    model, summary: pl.DataFrame, horizons_days: Sequence[int]
) -> dict[str, np.ndarray]:
    """P(at least one purchase in the h days after the end of observation), per horizon.

    Parameters
    ----------
    model : fitted customer-base model
        Anything with ``predict_p_no_purchase(summary, horizon_days=)``.
    summary : DataFrame
        The summary the model predicts from (frequency, recency, T in the model's unit).
    horizons_days : ints
        Horizons in days.

    Returns
    -------
    dict: ``p_order_next_<h>d`` -> probabilities (0 to 1), one per summary row.
    """
    return {
        order_probability_column(h): np.clip(
            1.0 - model.predict_p_no_purchase(summary, horizon_days=float(h)), 0.0, 1.0
        )
        for h in horizons_days
    }


def predict_next_order_offsets(
    model, summary: pl.DataFrame, *, max_days: int = 365, min_probability: float = 0.5
) -> np.ndarray:
    """Days from the end of observation to the expected next order date (NaN: no date).

    The date is the median of the next order's day among the outcomes where the customer orders
    within ``max_days``: the first whole day d >= 1 with
    P(order within d) >= P(order within max_days) / 2. It is NaN when
    P(order within max_days) < ``min_probability`` (more likely no order in the horizon).

    Why this and not the median wait given the customer is alive: that one ignores dropout, so
    a customer who has probably left gets as early a date as a loyal one; ranked against the
    real next orders on CDNOW (as of 1998-03-31, 90 days) it scores Harrell's C 0.69 on the
    customers it dates, and its dates run so long that "last order + average gap" beats its
    MAE. Here both the chance of ordering at all and the wait shape the date, and the
    truncation at the horizon keeps the heavy-tailed wait (its mean is infinite for most
    one-time buyers) from pushing dates far past it.

    Parameters
    ----------
    model : fitted customer-base model
        ``predict_p_no_purchase(summary, horizon_days=)`` must accept one horizon per row.
    summary : DataFrame
        The summary the model predicts from.
    max_days : int, default 365
        The horizon of the date, in days.
    min_probability : float, default 0.5

    Returns
    -------
    ndarray of float: whole days in 1 .. max_days, or NaN; one per summary row.
    """
    n = summary.height
    if n == 0:
        return np.zeros(0)

    def p_order(days: np.ndarray) -> np.ndarray:
        return 1.0 - np.asarray(model.predict_p_no_purchase(summary, horizon_days=days), float)

    within = p_order(np.full(n, float(max_days)))
    target = within / 2.0
    # bisection on whole days: p_order is increasing in the horizon; hi always satisfies it
    lo, hi = np.zeros(n), np.full(n, float(max_days))
    while np.any(hi - lo > 1):
        mid = np.floor((lo + hi) / 2.0)
        reached = p_order(np.maximum(mid, 1.0)) >= target
        hi, lo = np.where(reached, mid, hi), np.where(reached, lo, mid)
    ok = np.isfinite(within) & (within >= min_probability) & (within > 0)
    return np.where(ok, np.maximum(hi, 1.0), np.nan)


def naive_order_probabilities(
    summary: pl.DataFrame, *, horizon_days: float, unit_days: int = 1
) -> dict[str, np.ndarray]:
    """The naive rules for P(order within ``horizon_days`` days), one array per rule.

    - ``rate_rule``: 1 - exp(-rate * H), rate = frequency / T (the customer's own repeat rate
      over the observation, per day); a Poisson process at the customer's past rate. 0 for
      one-time buyers and T = 0.
    - ``recent_share``: one number for everyone, the share of customers already observed for at
      least H days (T >= H) whose last purchase lies in the last H days: how many ordered in the
      last window of the same length.

    The scoring keeps both and compares the model with the better one on the holdout (lower
    Brier score): the rate rule ranks customers, the share is calibrated on average, and which
    is stronger depends on the data (on CDNOW as of 1998-03-31, 90 days: 0.108 vs 0.121).

    Parameters
    ----------
    summary : DataFrame
        frequency, recency and T in units of ``unit_days`` days.
    horizon_days : float
    unit_days : int, default 1

    Returns
    -------
    dict: rule name -> probabilities, one per summary row.
    """
    x = summary.get_column("frequency").to_numpy().astype(float)
    recency = summary.get_column("recency").to_numpy().astype(float) * unit_days
    age = summary.get_column("T").to_numpy().astype(float) * unit_days
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(age > 0, x / age, 0.0)
    observed = age >= horizon_days
    recent = observed & (x > 0) & (age - recency < horizon_days)
    share = float(recent.sum() / observed.sum()) if observed.any() else 0.0
    return {
        "rate_rule": -np.expm1(-rate * horizon_days),
        "recent_share": np.full(x.size, share),
    }


def harrell_c(predicted_time, time, event, *, dense_limit: int = 4_000_000) -> float | None:
    """Harrell's concordance index of predicted times against observed, right-censored times.

    A pair (i, j) is comparable when the earlier observed time is an event: time_i < time_j
    and event_i (a censored i or a tie in time says nothing about the order). It is concordant
    when predicted_time_i < predicted_time_j, and counts one half when the predictions tie.
    NaN or +inf predictions (no date) rank after every finite one and tie with each other.

    With K distinct times and R distinct predictions (days: both small) the pairs are counted
    on the K x R table of customers when K * R <= ``dense_limit``; otherwise with a Fenwick tree
    over prediction ranks filled from the latest time down, O(n log n).

    Parameters
    ----------
    predicted_time, time : arrays of float
        The predicted and the observed time (e.g. days after the cutoff); time finite.
    event : array of bool
        True where ``time`` is the event (the next order), False where it is the censoring
        (no order up to ``time``).
    dense_limit : int
        Largest K * R counted on the table.

    Returns
    -------
    float in [0, 1], or None without a comparable pair.
    """
    predicted = np.asarray(predicted_time, dtype=float)
    if predicted.size == 0:
        return None
    ranks, time_ranks = _ranks(predicted, time)
    return _concordance(ranks, time_ranks, np.asarray(event, dtype=bool), dense_limit)


def _ranks(predicted, time) -> tuple[np.ndarray, np.ndarray]:
    """Dense ranks (from 0) of the predictions (NaN as +inf) and of the times."""
    predicted = np.asarray(predicted, dtype=float)
    predicted = np.where(np.isnan(predicted), np.inf, predicted)
    ranks = np.unique(predicted, return_inverse=True)[1].reshape(-1)
    time_ranks = np.unique(np.asarray(time, dtype=float), return_inverse=True)[1].reshape(-1)
    return ranks, time_ranks


def _concordance(ranks, time_ranks, event, dense_limit: int = 4_000_000) -> float | None:
    """Harrell's C from prediction and time ranks (only their order matters: ranks taken once
    serve every bootstrap resample)."""
    size, times = int(ranks.max()) + 1, int(time_ranks.max()) + 1
    if size * times <= dense_limit:
        concordant, pairs = _concordance_dense(ranks, time_ranks, event, size, times)
    else:
        concordant, pairs = _concordance_fenwick(ranks, time_ranks, event, size)
    return concordant / pairs if pairs else None


def _concordance_dense(ranks, time_ranks, event, size, times) -> tuple[float, int]:
    """(concordant pairs, comparable pairs) from the (time rank x prediction rank) table."""
    table = np.bincount(time_ranks * size + ranks, minlength=times * size).reshape(times, size)
    # later[k, r]: customers with a later time than k and prediction rank r
    later = np.cumsum(table[::-1], axis=0)[::-1]
    later = np.vstack([later[1:], np.zeros((1, size), dtype=np.int64)])
    # above[k, r]: ... and a prediction rank above r
    above = np.cumsum(later[:, ::-1], axis=1)[:, ::-1] - later
    k, r = time_ranks[event], ranks[event]
    concordant = float(above[k, r].sum()) + 0.5 * float(later[k, r].sum())
    return concordant, int(later.sum(axis=1)[k].sum())


def _concordance_fenwick(ranks, time_ranks, event, size) -> tuple[float, int]:
    """(concordant pairs, comparable pairs) with a Fenwick tree over prediction ranks."""
    ranks = ranks + 1  # 1 .. R
    tree = np.zeros(size + 1, dtype=np.int64)

    def prefix(index: np.ndarray) -> np.ndarray:  # customers inserted with rank <= index
        index, total = index.copy(), np.zeros(index.size, dtype=np.int64)
        while np.any(index > 0):
            live = index > 0
            total[live] += tree[index[live]]
            index[live] -= index[live] & -index[live]
        return total

    def insert(index: np.ndarray) -> None:
        index = index.copy()
        while index.size:
            np.add.at(tree, index, 1)
            index = index + (index & -index)
            index = index[index <= size]

    order = np.argsort(-time_ranks, kind="stable")
    sorted_time = time_ranks[order]
    starts = np.flatnonzero(np.r_[True, sorted_time[1:] != sorted_time[:-1]])
    ends = np.r_[starts[1:], order.size]
    inserted, concordant, pairs = 0, 0.0, 0
    for start, end in zip(starts, ends):
        block = order[start:end]
        events = ranks[block[event[block]]]
        if events.size and inserted:
            at_most = prefix(events)
            below = prefix(events - 1)
            concordant += float((inserted - at_most).sum()) + 0.5 * float((at_most - below).sum())
            pairs += inserted * events.size
        insert(ranks[block])
        inserted += block.size
    return concordant, pairs


def _paired_interval(differences: np.ndarray) -> tuple[float, float, float]:
    """Mean of paired per-customer differences and its 95% normal interval."""
    mean = float(differences.mean())
    if differences.size < 2:
        return mean, float("nan"), float("nan")
    half = _Z95 * float(differences.std(ddof=1)) / np.sqrt(differences.size)
    return mean, mean - half, mean + half


#: customers per bootstrap resample of Harrell's C at most (m-out-of-n above it)
BOOTSTRAP_MAX_CUSTOMERS = 20_000


def _bootstrap_c_interval(
    model_time, naive_time, time, event, *, resamples: int, seed: int
) -> tuple[float, float]:
    """95% interval of C(model) - C(naive) from paired bootstrap resamples of customers (the
    same resample for both), around the full-sample difference.

    Resamples hold m = min(n, BOOTSTRAP_MAX_CUSTOMERS) customers and their deviations from
    their mean are scaled by sqrt(m / n): the m-out-of-n bootstrap, valid here because C is a
    ratio of U-statistics whose spread falls as 1 / sqrt(n); it keeps the cost of a run with a
    million customers that of one with 20,000 (200 full resamples took 3.6 s at 100,000)."""
    rng = np.random.default_rng(seed)
    n = time.size
    m = min(n, BOOTSTRAP_MAX_CUSTOMERS)
    model_ranks, time_ranks = _ranks(model_time, time)
    naive_ranks, _ = _ranks(naive_time, time)
    full_model = _concordance(model_ranks, time_ranks, event)
    full_naive = _concordance(naive_ranks, time_ranks, event)
    if full_model is None or full_naive is None:
        return float("nan"), float("nan")
    differences = []
    for _ in range(resamples):
        pick = rng.integers(0, n, m)
        c_model = _concordance(model_ranks[pick], time_ranks[pick], event[pick])
        c_naive = _concordance(naive_ranks[pick], time_ranks[pick], event[pick])
        if c_model is not None and c_naive is not None:
            differences.append(c_model - c_naive)
    if len(differences) < 2:
        return float("nan"), float("nan")
    deviations = (np.asarray(differences) - np.mean(differences)) * np.sqrt(m / n)
    low, high = np.percentile(deviations, [2.5, 97.5]) + (full_model - full_naive)
    return float(low), float(high)


def score_next_order(
    probabilities: dict[str, np.ndarray],
    naive_probabilities: dict[int, dict[str, np.ndarray]],
    model_offsets: np.ndarray,
    naive_offsets: np.ndarray,
    next_order_days: np.ndarray,
    *,
    window_days: int,
    resamples: int = 200,
    seed: int = 0,
) -> pl.DataFrame:
    """Score the next-order predictions made at a cutoff against the holdout window after it.

    Parameters
    ----------
    probabilities : dict
        ``p_order_next_<h>d`` -> the model's probabilities at the cutoff, one per customer.
    naive_probabilities : dict
        horizon h (days) -> {rule name: probabilities} (:func:`naive_order_probabilities`).
    model_offsets, naive_offsets : arrays of float
        Days from the cutoff to the model's and the naive next order date (NaN: no date).
    next_order_days : array of float
        Days from the cutoff to the first order in the holdout window (NaN: none in it).
    window_days : int
        Length of the holdout window; horizons longer than it are not scored.
    resamples, seed : int
        Paired bootstrap of the Harrell's C difference.

    Returns
    -------
    Tidy metrics (model, metric, value, baseline; value = model, baseline = naive):

    - ``p_order_next_<h>d_vs_<rule>``: ``brier_score`` per naive rule;
    - ``next_order_date``: ``harrell_c`` over every customer, censored at the window end (no
      date ranks last); ``mae_days`` is :func:`models.clv.holdout.score_next_order_dates`';
    - ``next_order_verdict``: per quantity q (``p_order_next_<h>d`` against its best rule,
      ``expected_next_order_date`` against last order + average gap): ``q_<metric>`` (value
      model, baseline naive), ``q_<metric>_margin`` (how much better the model is: naive -
      model for errors, model - naive for C), ``q_<metric>_margin_ci_low`` / ``_ci_high``
      (95%: normal on the paired per-customer differences, bootstrap for C),
      ``q_<metric>_significant`` (1: the interval lies above 0) and ``q_model_published``
      (1: the model's values are published, 0: the naive rule's). A probability is the
      model's when its Brier margin is significant; the date when both its MAE and its C
      margins are. ``p_order_next_<h>d_naive_rule`` gives the best rule's index in NAIVE_RULES.
    """
    ordered = np.isfinite(next_order_days)
    frames, verdict = [], []
    for column, model_p in probabilities.items():
        horizon = int(column.removeprefix("p_order_next_").removesuffix("d"))
        if horizon > window_days:
            continue
        actual = (ordered & (next_order_days <= horizon)).astype(float)
        model_error = (model_p - actual) ** 2
        scored = {}
        for rule, naive_p in naive_probabilities[horizon].items():
            naive_error = (naive_p - actual) ** 2
            scored[rule] = naive_error
            frames.append(
                tidy_metrics(
                    f"{column}_vs_{rule}",
                    [("brier_score", float(model_error.mean()), float(naive_error.mean()))],
                )
            )
        best = min(scored, key=lambda rule: (scored[rule].mean(), rule))
        margin, low, high = _paired_interval(scored[best] - model_error)
        significant = bool(low > 0)
        verdict += [
            (f"{column}_brier_score", float(model_error.mean()), float(scored[best].mean())),
            (f"{column}_brier_score_margin", margin, None),
            (f"{column}_brier_score_margin_ci_low", low, None),
            (f"{column}_brier_score_margin_ci_high", high, None),
            (f"{column}_brier_score_significant", float(significant), None),
            (f"{column}_naive_rule", float(NAIVE_RULES.index(best)), None),
            (f"{column}_model_published", float(significant), None),
        ]

    # C over every customer: the ones without an order are censored just after the window end
    time = np.where(ordered, next_order_days, window_days + 0.5)
    c_model = harrell_c(model_offsets, time, ordered)
    c_naive = harrell_c(naive_offsets, time, ordered)
    frames.append(tidy_metrics("next_order_date", [("harrell_c", c_model, c_naive)]))
    date_significant = []
    if c_model is not None and c_naive is not None:
        low, high = _bootstrap_c_interval(
            np.where(np.isnan(model_offsets), np.inf, model_offsets),
            np.where(np.isnan(naive_offsets), np.inf, naive_offsets),
            time,
            ordered,
            resamples=resamples,
            seed=seed,
        )
        date_significant.append(bool(low > 0))
        verdict += _margin_rows(f"{DATE_QUANTITY}_harrell_c", c_model, c_naive, low, high)
    common = ordered & np.isfinite(model_offsets) & np.isfinite(naive_offsets)
    if common.any():
        model_abs = np.abs(model_offsets[common] - next_order_days[common])
        naive_abs = np.abs(naive_offsets[common] - next_order_days[common])
        margin, low, high = _paired_interval(naive_abs - model_abs)
        date_significant.append(bool(low > 0))
        verdict += _margin_rows(
            f"{DATE_QUANTITY}_mae_days", float(model_abs.mean()), float(naive_abs.mean()), low, high
        )
    published = len(date_significant) == 2 and all(date_significant)
    verdict.append((f"{DATE_QUANTITY}_model_published", float(published), None))
    frames.append(tidy_metrics(VERDICT_MODEL, verdict))
    return pl.concat(frames)


def _margin_rows(name: str, model_value, naive_value, low, high) -> list[tuple]:
    """A verdict's rows: the two values, the margin (positive: the model is better), its
    interval and whether it is significant. Errors (mae) are lower-better, C higher-better."""
    margin = naive_value - model_value if "mae" in name else model_value - naive_value
    return [
        (name, model_value, naive_value),
        (f"{name}_margin", margin, None),
        (f"{name}_margin_ci_low", low, None),
        (f"{name}_margin_ci_high", high, None),
        (f"{name}_significant", float(low > 0), None),
    ]


def published_sources(metrics: pl.DataFrame) -> dict[str, str | None]:
    """Which source each next-order quantity is published from, read from the verdict rows
    of ``metrics`` (model, metric, value): quantity -> 'model', a naive rule's name
    (``rate_rule``, ``recent_share``, ``naive_rule`` for the date: last order + average gap),
    or None when it was not scored (then the model's values are published)."""
    cells = {
        metric: value
        for model, metric, value in metrics.select("model", "metric", "value").iter_rows()
        if model == VERDICT_MODEL
    }
    sources: dict[str, str | None] = {}
    for metric, value in cells.items():
        if not metric.endswith("_model_published"):
            continue
        quantity = metric.removesuffix("_model_published")
        if value:
            sources[quantity] = "model"
        elif quantity == DATE_QUANTITY:
            sources[quantity] = "naive_rule"
        else:
            sources[quantity] = NAIVE_RULES[int(cells[f"{quantity}_naive_rule"])]
    return sources


def describe_next_order_verdict(metrics: pl.DataFrame) -> list[str]:
    """One sentence per next-order quantity of the verdict rows in ``metrics`` (model, metric,
    value, baseline; other models are ignored), for the run summary and the report: its
    metrics against the naive rule, the margin (positive: the model is better) with its 95%
    interval, and whose values are published."""
    rows = {
        metric: (value, baseline)
        for model, metric, value, baseline in metrics.select(
            "model", "metric", "value", "baseline"
        ).iter_rows()
        if model == VERDICT_MODEL
    }
    sources = published_sources(metrics)
    lines = []
    for quantity in sorted(sources):
        parts = []
        for metric in ("brier_score", "mae_days", "harrell_c"):
            name = f"{quantity}_{metric}"
            if name not in rows or None in rows[name]:
                continue
            model, naive = rows[name]
            margin, low, high, significant = (
                rows[f"{name}_{suffix}"][0]
                for suffix in ("margin", "margin_ci_low", "margin_ci_high", "significant")
            )
            parts.append(
                f"{metric} {model:.4g} vs {naive:.4g}, margin {margin:+.4g} "
                f"(95% {low:+.4g} to {high:+.4g}, significant {'yes' if significant else 'no'})"
            )
        source = sources[quantity]
        published = {
            "model": "the model's values",
            "naive_rule": "the naive rule's values (last order + average gap)",
        }.get(source, f"the naive rule's values ({source})")
        lines.append(f"Next order, {quantity}: {'; '.join(parts)}; published {published}.")
    return lines
