"""Evaluation: holdout metrics of the model next to its baselines, the choice of the
published scorer, and permutation importances."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import polars as pl
from scipy.special import ndtri
from scipy.stats import rankdata
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from threadpoolctl import threadpool_limits

from models.churn.frames import _check_labels, stratified_rows
from models.churn.model import ChurnModel

MODEL_NAME = "churn"
"""``model`` column of the metrics frame: ``churn``, ``churn_vs_<baseline>`` or
``churn_verdict``."""

VERDICT_MODEL = f"{MODEL_NAME}_verdict"
"""``model`` of the rows that say whether the churn model beat its best baseline."""

CONFIDENCE = 0.95
"""Level of the DeLong interval on the ROC AUC difference; the model is published only where
the interval's lower bound is above 0."""

METRICS_SCHEMA = {
    "model": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "baseline": pl.Float64,
}
IMPORTANCES_SCHEMA = {
    "feature": pl.String,
    "importance_mean": pl.Float64,
    "importance_std": pl.Float64,
}

DEFAULT_MAX_IMPORTANCE_CUSTOMERS = 20_000
"""Test customers the permutation importances are computed on, at most.

Each importance costs ``n_repeats`` predictions of the whole sample per feature (about 47
features), which took 160 s on 100k test customers with 5 repeats. On the 100k-customer
benchmark a seeded sample of 20k with 3 repeats gave the same top 5 and 9 of the top 10
features as all 100k with 5 repeats (Spearman 0.955 over all features, top-10 importances
within 0.0007) in a tenth of the time; a 10k sample dropped to Spearman 0.80.
"""


def _top_decile(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """Lift and capture rate of the top 10 % by score, ties at the boundary shared
    fractionally (the expectation over random tie-breaking), so a coarse score such as
    whole days of recency is not favoured or punished by the sort order."""
    n = len(y)
    k = math.ceil(0.1 * n)
    order = np.sort(score)[::-1]
    threshold = order[k - 1]
    above = score > threshold
    tied = score == threshold
    weight = above.astype(float) + tied * ((k - above.sum()) / tied.sum())
    churned_in_top = float((weight * y).sum())
    base_rate = y.mean()
    lift = (churned_in_top / k) / base_rate
    capture = churned_in_top / y.sum()
    return lift, capture


def _calibration_bins(
    y: np.ndarray, probability: np.ndarray, n_bins: int
) -> list[tuple[str, float]]:
    """Observed churn rate and mean probability per equal-count bin of the probability."""
    order = np.argsort(probability, kind="stable")
    rows = []
    for number, members in enumerate(np.array_split(order, n_bins), start=1):
        if len(members) == 0:
            continue
        rows.append((f"calibration_bin_{number}_predicted", float(probability[members].mean())))
        rows.append((f"calibration_bin_{number}_observed", float(y[members].mean())))
    return rows


def _score_metrics(
    y: np.ndarray, raw: np.ndarray, probability: np.ndarray, n_bins: int
) -> list[tuple[str, float]]:
    lift, capture = _top_decile(y, raw)
    clipped = np.clip(probability, 1e-15, 1 - 1e-15)
    return [
        ("roc_auc", float(roc_auc_score(y, raw))),
        ("pr_auc", float(average_precision_score(y, raw))),
        ("brier_score", float(brier_score_loss(y, probability))),
        ("log_loss", float(log_loss(y, clipped, labels=[0, 1]))),
        ("top_decile_lift", float(lift)),
        ("top_decile_capture_rate", float(capture)),
        *_calibration_bins(y, probability, n_bins),
    ]


def delong_auc_difference(
    y_true, score_a, score_b, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """ROC AUC of ``score_a`` minus that of ``score_b`` on the same customers, with its
    two-sided DeLong interval (DeLong, DeLong & Clarke-Pearson 1988; the midrank algorithm of
    Sun & Xu 2014, O(n log n), ties counted one half).

    Parameters
    ----------
    y_true : array of 0/1 (1 = churned), with both classes.
    score_a, score_b : arrays of finite scores, higher = riskier.
    confidence : level of the interval (0.95).

    Returns
    -------
    (difference, low, high) in ROC AUC units.
    """
    y = _check_labels(y_true)
    positives, negatives = y == 1, y == 0
    m, n = int(positives.sum()), int(negatives.sum())
    if m == 0 or n == 0:
        raise ValueError("the DeLong interval needs both churned and retained customers")
    aucs, v10, v01 = [], [], []
    for score in (np.asarray(score_a, float), np.asarray(score_b, float)):
        x, z = score[positives], score[negatives]
        rank_x, rank_z = rankdata(x), rankdata(z)
        rank_all = rankdata(np.concatenate([x, z]))
        aucs.append((rank_all[:m].sum() - m * (m + 1) / 2) / (m * n))
        # structural components: per churner the share of retained scored lower, per
        # retained customer the share of churners scored higher
        v10.append((rank_all[:m] - rank_x) / n)
        v01.append(1.0 - (rank_all[m:] - rank_z) / m)
    covariance = np.cov(np.vstack(v10)) / m + np.cov(np.vstack(v01)) / n
    variance = max(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0)
    difference = float(aucs[0] - aucs[1])
    half = float(ndtri(0.5 + confidence / 2) * np.sqrt(variance))
    return difference, difference - half, difference + half


def compute_churn_metrics(
    y_true,
    churn_probability,
    baselines: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    n_bins: int = 10,
) -> pl.DataFrame:
    """Holdout metrics of the model next to each baseline's, as a tidy frame.

    Parameters
    ----------
    y_true : array-like of bool or 0/1
        ``is_churned`` at the test cutoff, one per customer.
    churn_probability : array-like
        The model's churn probability for the same customers.
    baselines : mapping name -> (raw score, probability)
        Raw score (higher = riskier) for the ranking metrics (ROC AUC, PR AUC, top-decile
        lift and capture rate); probability for Brier score, log loss and calibration bins.

    Returns
    -------
    polars.DataFrame: model, metric, value, baseline, the project's metrics layout
    (``models.model_metrics``): ``value`` is the churn model's, ``baseline`` the
    baseline's on the same customers, and ``model`` names the comparison,
    ``churn_vs_<baseline>`` (``churn_vs_recency``, ``churn_vs_p_no_purchase``). Each
    comparison also has ``roc_auc_difference`` (model - baseline) and its 95% DeLong
    interval ``roc_auc_difference_ci_low`` / ``_ci_high`` (baseline column null). Rows with
    model ``churn`` and no baseline: ``n_customers``, ``churn_rate`` (and every metric
    when no baseline is given). Calibration bins are deciles of each scorer's own
    probability: ``calibration_bin_<k>_predicted`` / ``_observed``.
    """
    y = _check_labels(y_true)
    if len(np.unique(y)) < 2:
        raise ValueError("metrics need both churned and retained customers in the test set")
    probability = np.asarray(churn_probability, float)
    model_metrics = _score_metrics(y, probability, probability, n_bins)

    rows: list[tuple[str, str, float, float | None]] = [
        (MODEL_NAME, "n_customers", float(len(y)), None),
        (MODEL_NAME, "churn_rate", float(y.mean()), None),
    ]
    if not baselines:
        rows.extend((MODEL_NAME, metric, value, None) for metric, value in model_metrics)
    for name, (raw, baseline_probability) in (baselines or {}).items():
        raw = np.asarray(raw, float)
        # Customers a baseline cannot score rank last (NaN would break the metrics).
        raw = np.where(np.isfinite(raw), raw, np.nanmin(raw) - 1 if np.isfinite(raw).any() else 0.0)
        baseline_metrics = dict(
            _score_metrics(y, raw, np.asarray(baseline_probability, float), n_bins)
        )
        rows.extend(
            (f"{MODEL_NAME}_vs_{name}", metric, value, baseline_metrics.get(metric))
            for metric, value in model_metrics
        )
        difference, low, high = delong_auc_difference(y, probability, raw)
        rows.extend(
            (f"{MODEL_NAME}_vs_{name}", metric, value, None)
            for metric, value in (
                ("roc_auc_difference", difference),
                ("roc_auc_difference_ci_low", low),
                ("roc_auc_difference_ci_high", high),
            )
        )
    return pl.DataFrame(rows, schema=METRICS_SCHEMA, orient="row")


def choose_published_scorer(metrics: pl.DataFrame) -> tuple[str, bool, str]:
    """Which scores to publish: the model's only where it beats the best baseline (highest
    test ROC AUC; a tie goes to the first by name) by a margin the test set supports, the
    lower bound of the 95% DeLong interval on the ROC AUC difference above 0.

    Parameters
    ----------
    metrics : polars.DataFrame
        As returned by ``compute_churn_metrics``.

    Returns
    -------
    (scorer, model_beats_baselines, message): scorer is "model" or a baseline name;
    message is one sentence for the run log, the summary and the report.
    """
    verdict = churn_verdict(metrics)
    if verdict is None:
        model_auc = metrics.filter(pl.col("metric") == "roc_auc")["value"][0]
        return (
            "model",
            True,
            f"The churn model has test ROC AUC {model_auc:.3f}; no baseline was available.",
        )
    best, model_auc, best_auc, difference, low, high = (
        verdict[k] for k in ("baseline", "model_auc", "baseline_auc", "difference", "low", "high")
    )
    interval = f"{difference:+.3f}, 95% interval {low:+.3f} to {high:+.3f}"
    if low > 0:
        return (
            "model",
            True,
            f"The churn model beats the best baseline ({best}) on test ROC AUC: "
            f"{model_auc:.3f} vs {best_auc:.3f} ({interval}, significant), "
            "so the published scores are the model's.",
        )
    return (
        best,
        False,
        f"The churn model does not beat the best baseline ({best}) on test ROC AUC by a "
        f"significant margin ({model_auc:.3f} vs {best_auc:.3f}, {interval}), "
        f"so the published scores are the {best} baseline's.",
    )


def churn_verdict(metrics: pl.DataFrame) -> dict | None:
    """The comparison of the churn model with its best baseline (highest test ROC AUC),
    from ``compute_churn_metrics``' frame, or None without baselines.

    Returns
    -------
    dict: baseline (name), model_auc, baseline_auc, difference, low, high (ROC AUC units),
    significant (bool, low > 0).
    """
    prefix = f"{MODEL_NAME}_vs_"
    compared = metrics.filter(pl.col("model").str.starts_with(prefix))
    auc = compared.filter(pl.col("metric") == "roc_auc")
    if auc.is_empty():
        return None
    best = auc.sort(["baseline", "model"], descending=[True, False]).row(0, named=True)
    cells = {
        row["metric"]: row["value"]
        for row in compared.filter(pl.col("model") == best["model"]).iter_rows(named=True)
    }
    low = cells["roc_auc_difference_ci_low"]
    return {
        "baseline": best["model"].removeprefix(prefix),
        "model_auc": best["value"],
        "baseline_auc": best["baseline"],
        "difference": cells["roc_auc_difference"],
        "low": low,
        "high": cells["roc_auc_difference_ci_high"],
        "significant": bool(low > 0),
    }


def verdict_metrics(metrics: pl.DataFrame, published: str) -> pl.DataFrame:
    """The verdict rows for ``models.model_metrics``, model ``churn_verdict``: ``roc_auc``
    (value the model's, baseline the best baseline's), ``roc_auc_difference`` and its
    interval ``roc_auc_difference_ci_low`` / ``_ci_high``, ``significant`` (1 or 0) and
    ``model_published`` (1 or 0); no rows without baselines. The best baseline is the
    comparison ``churn_vs_<name>`` with the highest baseline ROC AUC."""
    verdict = churn_verdict(metrics)
    if verdict is None:
        return pl.DataFrame(schema=METRICS_SCHEMA)
    rows = [
        ("roc_auc", verdict["model_auc"], verdict["baseline_auc"]),
        ("roc_auc_difference", verdict["difference"], None),
        ("roc_auc_difference_ci_low", verdict["low"], None),
        ("roc_auc_difference_ci_high", verdict["high"], None),
        ("significant", float(verdict["significant"]), None),
        ("model_published", float(published == "model"), None),
    ]
    return pl.DataFrame(
        [(VERDICT_MODEL, *row) for row in rows], schema=METRICS_SCHEMA, orient="row"
    )


def compute_permutation_importances(
    model: ChurnModel,
    X: pl.DataFrame,
    y,
    n_repeats: int = 3,
    random_state: int = 0,
    max_customers: int | None = DEFAULT_MAX_IMPORTANCE_CUSTOMERS,
) -> pl.DataFrame:
    """Global permutation importances (drop in ROC AUC) on a holdout set.

    Parameters
    ----------
    max_customers : int or None
        Permute within a seeded sample of at most this many customers, stratified by
        the label (None = all of them); see ``DEFAULT_MAX_IMPORTANCE_CUSTOMERS``.

    Returns
    -------
    polars.DataFrame: feature, importance_mean, importance_std; one row per feature,
    most important first.
    """
    labels = _check_labels(y)
    keep = stratified_rows(labels, max_customers, random_state)
    if keep is not None:
        X = X[keep] if isinstance(X, pl.DataFrame) else X.iloc[keep]
        labels = labels[keep]
    # Permute the encoded columns: the encoder maps each value on its own, so this equals
    # permuting the raw features, and the encoder does not rerun for every permutation.
    encoded = model.pipeline_[:-1].transform(model._prepare(X))
    with threadpool_limits(limits=model.n_threads, user_api="openmp"):
        result = permutation_importance(
            model.pipeline_[-1],
            encoded,
            labels,
            scoring="roc_auc",
            n_repeats=n_repeats,
            random_state=random_state,
        )
    unused = list(model.unused_features_)  # never split on: no importance
    return pl.DataFrame(
        {
            "feature": [str(name) for name in encoded.columns] + unused,
            "importance_mean": [*result.importances_mean, *[0.0] * len(unused)],
            "importance_std": [*result.importances_std, *[0.0] * len(unused)],
        },
        schema=IMPORTANCES_SCHEMA,
    ).sort(["importance_mean", "feature"], descending=[True, False])
