"""Churn-risk model: probability that a customer places no completed order in the horizon.

Frames in, frames out: no file paths (except in ``save_churn_model`` /
``load_churn_model``, which take the path from the caller) and no database. Features
come from ``sql/models/churn_features.sql`` and labels (``is_churned``) from the
separate, dated ``sql/models/churn_labels.sql``; this module never builds a label.

Choices:

- HistGradientBoostingClassifier: non-linear, handles missing values (no events, no
  profile, a single order without a gap) and categorical columns natively, fast on
  tens of thousands of rows, no scaling needed.
- Imbalance: churn within a 90-day horizon is rarely rare (30-70 % of buyers in
  non-contractual retail), and at such rates class weights did not change the test
  ROC AUC while making every fit 2.5-4x slower (weighted binning in scikit-learn 1.9). So
  ``class_weight="auto"`` weights the classes ("balanced") only when the rarer class is
  under 20 % of the training customers, where the trees would otherwise barely split
  on it. Calibration is fit on held-out folds *without* weights, so the published
  probabilities return to the true base rate either way.
- Calibration: on fewer than 20,000 training customers, CalibratedClassifierCV over 5
  folds (one booster per fold, then one on all rows); from 20,000 on, one booster fit on
  80 % of them and calibrated on the other 20 % (a stratified, seeded split), which is
  six times cheaper and leaves thousands of customers to calibrate on. ``method="auto"``
  = isotonic when the calibration set (or each fold) holds at least 1000 customers
  (isotonic regression overfits below that, see the scikit-learn user guide on
  probability calibration), else sigmoid (Platt 1999, two parameters, safe on small data).
- Size: from 10,000 rows the booster stops adding trees once the log loss on a 10 %
  validation split stops improving (scikit-learn's ``early_stopping="auto"``), and a fit
  uses at most ``DEFAULT_MAX_TRAIN_CUSTOMERS`` = 200,000 customers (a stratified, seeded
  sample; the learning curve behind that number is in its docstring). Permutation
  importances use at most 20,000 test customers and 3 repeats
  (``DEFAULT_MAX_IMPORTANCE_CUSTOMERS``).
- Baselines are the scores users reach for without a model: recency (days since the
  last order) and ``1 - p_alive`` from BG/NBD (Fader, Hardie & Lee 2005). Ranking
  metrics use their raw scores; probability metrics use the same score Platt-scaled on
  the training cutoff, so Brier score and log loss compare like with like.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    roc_auc_score,
)
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

ID_COLUMNS = ("customer_id", "cutoff_date")
"""Columns of the feature frame that identify a row and are never features."""

LABEL_COLUMN = "is_churned"

MODEL_NAME = "churn"
"""``model`` column of the metrics frame: ``churn``, or ``churn_vs_<baseline>``."""

BASELINE_SCORES = {
    # baseline name: the feature its score is computed from
    "recency": "days_since_last_order",
    "bgnbd": "p_alive",
}

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
SCORES_SCHEMA = {
    "customer_id": pl.String,
    "churn_probability": pl.Float64,
    "churn_band": pl.String,
}

_ARTIFACT_KIND = "crm-pipeline churn model"
_ARTIFACT_FORMAT = 1
# Isotonic calibration needs about this many customers per calibration fold.
_MIN_ROWS_PER_FOLD_FOR_ISOTONIC = 1000

DEFAULT_MAX_TRAIN_CUSTOMERS = 200_000
"""Training customers per fit, at most (a stratified, seeded sample above it).

Learning curve on the 1M-customer benchmark (``benchmarks/run.py --size L``): the model
trained at as_of - 2H on a sample of N labelled customers, test ROC AUC on all 1,000,078
customers at as_of - H, and the fit's CPU time:

====================  ======  ======  ======  ======  ======  ==========
N                     25k     50k     100k    200k    400k    all (1.0M)
ROC AUC               0.917   0.919   0.920   0.921   0.922   0.922
fit, CPU s            0.9     1.5     3.3     6.4     12.5    31.8
====================  ======  ======  ======  ======  ======  ==========

(exactly: 0.9170, 0.9187, 0.9203, 0.9212, 0.9217, 0.9224; PR AUC 0.976 to 0.980.) Past
200k customers the fit time keeps doubling while the AUC gains under 0.001 per doubling,
so the refit on a larger shop is capped here; smaller shops use every labelled customer.
"""

DEFAULT_MAX_IMPORTANCE_CUSTOMERS = 20_000
"""Test customers the permutation importances are computed on, at most.

Each importance costs ``n_repeats`` predictions of the whole sample per feature (about 47
features), which took 160 s on 100k test customers with 5 repeats. On the 100k-customer
benchmark a seeded sample of 20k with 3 repeats gave the same top 5 and 9 of the top 10
features as all 100k with 5 repeats (Spearman 0.955 over all features, top-10 importances
within 0.0007) in a tenth of the time; a 10k sample dropped to Spearman 0.80.
"""


# --------------------------------------------------------------------------- frames


def select_feature_columns(features: pl.DataFrame) -> list[str]:
    """Names of the feature columns of a churn feature frame (all but the ids).

    Parameters
    ----------
    features : polars.DataFrame
        One row per customer, as built by ``sql/models/churn_features.sql``, optionally
        with ``p_alive`` and ``expected_purchases`` joined in.
    """
    return [name for name in features.columns if name not in (*ID_COLUMNS, LABEL_COLUMN)]


def _to_pandas(X: pl.DataFrame | pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    """Features as pandas for scikit-learn: categorical columns as text, the rest as floats."""
    if isinstance(X, pd.DataFrame):
        X = pl.from_pandas(X)
    if not isinstance(X, pl.DataFrame):
        raise TypeError(f"expected a polars or pandas DataFrame of features, got {type(X).__name__}")
    converted = X.with_columns(
        [
            pl.col(name).cast(pl.String) if name in categorical else pl.col(name).cast(pl.Float64)
            for name in X.columns
        ]
    )
    frame = converted.to_pandas()
    for name in categorical:
        # One missing-value marker for the encoder, whatever pandas' string dtype is.
        frame[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
    return frame


def _categorical_columns(X: pl.DataFrame | pd.DataFrame) -> list[str]:
    if isinstance(X, pd.DataFrame):
        X = pl.from_pandas(X)
    return [
        name
        for name, dtype in X.schema.items()
        if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum)
    ]


def _check_labels(y) -> np.ndarray:
    labels = np.asarray(pl.Series(y).cast(pl.Int8).to_numpy() if isinstance(y, pl.Series) else y)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    if pd.isna(labels).any():
        raise ValueError("labels contain missing values")
    labels = labels.astype(int)
    if not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("labels must be 0/1 or booleans (1 = churned)")
    return labels


def _check_matching_features(expected: Sequence[str], X: pl.DataFrame | pd.DataFrame) -> None:
    """Refuse a frame whose columns are not the fitted model's features."""
    given = list(X.columns)
    missing = [name for name in expected if name not in given]
    extra = [name for name in given if name not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise ValueError(
            "The churn model was fitted on other features than the frame it was given: "
            + "; ".join(parts)
            + ". Rebuild the features with the same SQL and BG/NBD inputs, or refit the model."
        )


# --------------------------------------------------------------------------- models


class ChurnModel(ClassifierMixin, BaseEstimator):
    """Calibrated gradient-boosted churn classifier.

    Class 1 = churned (no completed order within the horizon after the cutoff).

    Parameters
    ----------
    learning_rate, max_iter, max_leaf_nodes, min_samples_leaf, l2_regularization
        Passed to ``HistGradientBoostingClassifier``.
    class_weight : {"auto", "balanced"} or None
        Weights for the boosting step only; calibration is always fit unweighted.
        "auto" = "balanced" when the rarer class is under ``imbalance_threshold`` of
        the training customers, else no weights.
    imbalance_threshold : float
        Share of the rarer class below which "auto" weights the classes.
    calibration : {"auto", "sigmoid", "isotonic"}
        "auto" = isotonic when every calibration fold has at least 1000 customers,
        else sigmoid.
    calibration_folds : int
        Folds of CalibratedClassifierCV on training sets smaller than
        ``holdout_min_customers`` (fewer when the rarer class is smaller).
    holdout_min_customers : int
        From this many training customers on, the booster is fitted once on
        ``1 - calibration_share`` of them and calibrated on the rest (a stratified, seeded
        split) instead of ``calibration_folds + 1`` fits.
    calibration_share : float
        Share of the customers held out for calibration on large training sets.
    max_train_customers : int or None
        Fit on a seeded sample of at most this many customers, stratified by the label
        (None = all); see ``DEFAULT_MAX_TRAIN_CUSTOMERS``.
    early_stopping : "auto" or bool
        Passed to ``HistGradientBoostingClassifier``: stop adding trees when the log loss
        on 10 % of the boosting rows (a seeded, stratified split) has not improved for 10
        iterations, ``max_iter`` being the cap; "auto" = from 10,000 rows on.
    max_categories : int
        Largest number of categories kept per categorical column (rarer ones are
        grouped); keeps the boosting step within its 255 bins.
    n_threads : int or None
        OpenMP threads for boosting; None = all cores. Default 1: OpenMP threads
        busy-wait, and on a shared machine (CI, other jobs running) two threads were
        about six times slower than one at these data sizes.
    random_state : int
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        max_iter: int = 100,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        l2_regularization: float = 1.0,
        class_weight: str | None = "auto",
        imbalance_threshold: float = 0.2,
        calibration: str = "auto",
        calibration_folds: int = 5,
        holdout_min_customers: int = 20_000,
        calibration_share: float = 0.2,
        max_train_customers: int | None = DEFAULT_MAX_TRAIN_CUSTOMERS,
        early_stopping: bool | str = "auto",
        max_categories: int = 32,
        n_threads: int | None = 1,
        random_state: int = 0,
    ):
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.imbalance_threshold = imbalance_threshold
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.holdout_min_customers = holdout_min_customers
        self.calibration_share = calibration_share
        self.max_train_customers = max_train_customers
        self.early_stopping = early_stopping
        self.max_categories = max_categories
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, X: pl.DataFrame | pd.DataFrame, y) -> ChurnModel:
        """Fit on one row per customer.

        Parameters
        ----------
        X : polars or pandas DataFrame
            Feature columns only (see ``select_feature_columns``); text columns are
            treated as categorical, everything else as numbers, missing values allowed.
        y : array-like of bool or 0/1
            ``is_churned`` from the dated label table, aligned with ``X``.
        """
        if self.calibration not in ("auto", "sigmoid", "isotonic"):
            raise ValueError(f"calibration must be 'auto', 'sigmoid' or 'isotonic', got {self.calibration!r}")
        if self.class_weight not in ("auto", "balanced", None):
            raise ValueError(f"class_weight must be 'auto', 'balanced' or None, got {self.class_weight!r}")
        labels = _check_labels(y)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(labels)}")
        counts = np.bincount(labels, minlength=2)
        if counts.min() < 2:
            raise ValueError(
                f"need at least 2 churned and 2 retained customers to fit, got {counts[1]} and {counts[0]}"
            )
        n_available = len(labels)
        if self.max_train_customers is not None and n_available > self.max_train_customers:
            # A seeded sample with the label's proportions, in the frame's own order.
            keep = np.sort(
                train_test_split(
                    np.arange(n_available),
                    train_size=int(self.max_train_customers),
                    stratify=labels,
                    random_state=self.random_state,
                )[0]
            )
            X = X[keep] if isinstance(X, pl.DataFrame) else X.iloc[keep]
            labels = labels[keep]
            counts = np.bincount(labels, minlength=2)
        categorical = _categorical_columns(X)
        frame = _to_pandas(X, categorical)
        # A feature known for fewer customers than a leaf needs can never be split on
        # (and an all-missing column breaks the boosting's binning): set it aside. This
        # is the usual case for profile and event features when a source is absent.
        unused = [name for name in frame.columns if frame[name].notna().sum() < self.min_samples_leaf]
        categorical_used = [name for name in categorical if name not in unused]
        holdout = len(labels) >= self.holdout_min_customers
        n_folds = int(min(self.calibration_folds, counts.min()))
        method = self.calibration
        if method == "auto":
            rows_per_fold = len(labels) * self.calibration_share if holdout else len(labels) / n_folds
            method = "isotonic" if rows_per_fold >= _MIN_ROWS_PER_FOLD_FOR_ISOTONIC else "sigmoid"
        class_weight = self.class_weight
        if class_weight == "auto":
            minority_share = counts.min() / counts.sum()
            class_weight = "balanced" if minority_share < self.imbalance_threshold else None

        booster = HistGradientBoostingClassifier(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            categorical_features=categorical_used or None,
            class_weight=class_weight,
            early_stopping=self.early_stopping,
            random_state=self.random_state,
        )
        steps = []
        if categorical_used:
            ordinal = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                max_categories=self.max_categories,
            )
            steps.append(("categorical", ordinal, categorical_used))
        if unused:
            steps.append(("unused", "drop", unused))
        encoder = ColumnTransformer(
            steps,
            remainder="passthrough",
            verbose_feature_names_out=False,
        ).set_output(transform="pandas")
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            if holdout:
                # Large sets: one booster on most customers, calibrated on the held-out
                # rest, which it never saw (Platt 1999; Niculescu-Mizil & Caruana 2005).
                encoded = encoder.fit_transform(frame)
                fit_rows, calibration_rows = train_test_split(
                    np.arange(len(labels)),
                    test_size=self.calibration_share,
                    stratify=labels,
                    random_state=self.random_state,
                )
                fit_rows, calibration_rows = np.sort(fit_rows), np.sort(calibration_rows)
                booster.fit(encoded.iloc[fit_rows], labels[fit_rows])
                calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method=method).fit(
                    encoded.iloc[calibration_rows], labels[calibration_rows]
                )
                pipeline = Pipeline([("encode", encoder), ("classify", calibrated)])
            else:
                # ensemble=False: one booster refit on all rows, calibrated on the
                # out-of-fold predictions of the fold models; scoring (and the permutation
                # importances) then runs one booster instead of one per fold.
                calibrated = CalibratedClassifierCV(
                    booster,
                    method=method,
                    cv=StratifiedKFold(n_folds, shuffle=True, random_state=self.random_state),
                    ensemble=False,
                )
                pipeline = Pipeline([("encode", encoder), ("classify", calibrated)])
                pipeline.fit(frame, labels)

        self.pipeline_ = pipeline
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = len(frame.columns)
        self.categorical_features_ = list(categorical)
        self.unused_features_ = unused
        self.calibration_method_ = method
        self.class_weight_ = class_weight
        self.calibration_cv_ = "holdout" if holdout else f"{n_folds}-fold"
        self.n_train_customers_ = len(labels)
        self.classes_ = np.array([0, 1])
        return self

    def _prepare(self, X: pl.DataFrame | pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self)
        _check_matching_features(list(self.feature_names_in_), X)
        frame = _to_pandas(X, self.categorical_features_)
        return frame[list(self.feature_names_in_)]

    def predict_proba(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """Probabilities, shape (n, 2); column 1 is the churn probability."""
        frame = self._prepare(X)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return self.pipeline_.predict_proba(frame)

    def predict(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """1 where the churn probability is at least one half."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class BaselineChurnModel(ClassifierMixin, BaseEstimator):
    """A one-score rule users reach for, Platt-scaled into a churn probability.

    Parameters
    ----------
    score : {"recency", "bgnbd"}
        "recency": days since the last order (feature ``days_since_last_order``);
        "bgnbd": ``1 - p_alive`` (feature ``p_alive``).
    """

    def __init__(self, score: str = "recency"):
        self.score = score

    def _raw(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        if self.score not in BASELINE_SCORES:
            raise ValueError(f"score must be one of {sorted(BASELINE_SCORES)}, got {self.score!r}")
        column = BASELINE_SCORES[self.score]
        if column not in X.columns:
            raise ValueError(f"the {self.score} baseline needs the column {column!r}")
        values = (
            X[column].cast(pl.Float64).to_numpy()
            if isinstance(X, pl.DataFrame)
            else pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        )
        return 1.0 - values if self.score == "bgnbd" else values

    def score_raw(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """The rule's own score: higher = more likely to churn (NaN where unknown)."""
        return self._raw(X)

    def _transform(self, X) -> np.ndarray:
        """The score as the Platt scaling sees it: log days for recency (a day's wait
        means more after a week than after a year), 1 - p_alive as it is (its logit
        puts every one-time buyer, p_alive = 1, at an extreme that flattens the fit)."""
        raw = self._raw(X)
        if self.score == "recency":
            return np.log1p(np.clip(raw, 0, None))
        return np.clip(raw, 0.0, 1.0)

    def _design(self, X) -> np.ndarray:
        transformed = self._transform(X)
        # A customer the score does not cover sits at the training median.
        return np.where(np.isfinite(transformed), transformed, self.fill_value_).reshape(-1, 1)

    def fit(self, X: pl.DataFrame | pd.DataFrame, y) -> BaselineChurnModel:
        """Fit the Platt scaling of the score on one row per customer with its label."""
        labels = _check_labels(y)
        if len(np.unique(labels)) < 2:
            raise ValueError("need both churned and retained customers to fit a baseline")
        transformed = self._transform(X)
        covered = np.isfinite(transformed)
        if not covered.any():
            raise ValueError(f"the {self.score} baseline has no score for any customer")
        self.fill_value_ = float(np.median(transformed[covered]))
        self.calibrator_ = Pipeline([("scale", StandardScaler()), ("platt", LogisticRegression())]).fit(
            self._design(X), labels
        )
        self.feature_names_in_ = np.asarray([BASELINE_SCORES[self.score]], dtype=object)
        self.n_features_in_ = 1
        self.classes_ = np.array([0, 1])
        self.coverage_ = float(covered.mean())
        return self

    def predict_proba(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        check_is_fitted(self)
        return self.calibrator_.predict_proba(self._design(X))

    def predict(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


# --------------------------------------------------------------------------- scores


def score_without_labels(features: pl.DataFrame) -> tuple[np.ndarray, str]:
    """Fallback churn score when no model can be validated.

    ``1 - p_alive`` (BG/NBD) where the frame has it; otherwise, or for customers the
    BG/NBD scores do not cover, the customer's recency percentile among those scored
    (a ranking in (0, 1], not a calibrated probability).

    Returns
    -------
    (scores, source) where source is "bgnbd" or "recency".
    """
    recency = features["days_since_last_order"].cast(pl.Float64)
    recency_rank = (recency.rank(method="average") / max(len(recency), 1)).to_numpy()
    if "p_alive" in features.columns and features["p_alive"].is_not_null().any():
        p_alive = features["p_alive"].cast(pl.Float64).to_numpy()
        scores = np.where(np.isnan(p_alive), recency_rank, 1.0 - p_alive)
        return np.clip(scores, 0.0, 1.0), "bgnbd"
    return recency_rank, "recency"


def assign_churn_bands(probabilities, cutoffs: tuple[float, float] = (0.33, 0.66)) -> pl.Series:
    """low below the first cut-off, high at or above the second, medium between."""
    low, high = cutoffs
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"band cut-offs must satisfy 0 <= low < high <= 1, got {cutoffs}")
    p = pl.Series("churn_probability", np.asarray(probabilities, dtype=float))
    return (
        pl.select(
            pl.when(p < low).then(pl.lit("low")).when(p < high).then(pl.lit("medium")).otherwise(pl.lit("high"))
        )
        .to_series()
        .alias("churn_band")
    )


def build_churn_scores(
    customer_ids, probabilities, cutoffs: tuple[float, float] = (0.33, 0.66)
) -> pl.DataFrame:
    """One row per customer: customer_id, churn_probability, churn_band."""
    probabilities = np.asarray(probabilities, dtype=float)
    return pl.DataFrame(
        {
            "customer_id": pl.Series(customer_ids, dtype=pl.String),
            "churn_probability": probabilities,
            "churn_band": assign_churn_bands(probabilities, cutoffs),
        },
        schema=SCORES_SCHEMA,
    )


# --------------------------------------------------------------------------- metrics


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


def _calibration_bins(y: np.ndarray, probability: np.ndarray, n_bins: int) -> list[tuple[str, float]]:
    """Observed churn rate and mean probability per equal-count bin of the probability."""
    order = np.argsort(probability, kind="stable")
    rows = []
    for number, members in enumerate(np.array_split(order, n_bins), start=1):
        if len(members) == 0:
            continue
        rows.append((f"calibration_bin_{number}_predicted", float(probability[members].mean())))
        rows.append((f"calibration_bin_{number}_observed", float(y[members].mean())))
    return rows


def _score_metrics(y: np.ndarray, raw: np.ndarray, probability: np.ndarray, n_bins: int) -> list[tuple[str, float]]:
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
    ``churn_vs_<baseline>`` (``churn_vs_recency``, ``churn_vs_bgnbd``). Rows with
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
        baseline_metrics = dict(_score_metrics(y, raw, np.asarray(baseline_probability, float), n_bins))
        rows.extend(
            (f"{MODEL_NAME}_vs_{name}", metric, value, baseline_metrics.get(metric))
            for metric, value in model_metrics
        )
    return pl.DataFrame(rows, schema=METRICS_SCHEMA, orient="row")


def choose_published_scorer(metrics: pl.DataFrame) -> tuple[str, bool, str]:
    """Which scores to publish: the model's unless a baseline has at least its test ROC AUC.

    Parameters
    ----------
    metrics : polars.DataFrame
        As returned by ``compute_churn_metrics``.

    Returns
    -------
    (scorer, model_beats_baselines, message): scorer is "model" or a baseline name;
    message is one sentence for the run log and the report.
    """
    prefix = f"{MODEL_NAME}_vs_"
    auc = metrics.filter((pl.col("metric") == "roc_auc") & pl.col("model").str.starts_with(prefix))
    if auc.is_empty():
        model_auc = metrics.filter((pl.col("metric") == "roc_auc"))["value"][0]
        return "model", True, f"The churn model has test ROC AUC {model_auc:.3f}; no baseline was available."
    model_auc = auc["value"][0]
    best = auc.sort(["baseline", "model"], descending=[True, False]).row(0, named=True)
    best_name, best_auc = best["model"].removeprefix(prefix), best["baseline"]
    if model_auc > best_auc:
        return (
            "model",
            True,
            f"The churn model beats the best baseline ({best_name}) on test ROC AUC: "
            f"{model_auc:.3f} vs {best_auc:.3f}.",
        )
    return (
        best_name,
        False,
        f"The churn model does not beat the {best_name} baseline on test ROC AUC "
        f"({model_auc:.3f} vs {best_auc:.3f}), so the published scores are the {best_name} baseline's.",
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
    if max_customers is not None and len(labels) > max_customers:
        keep = np.sort(
            train_test_split(
                np.arange(len(labels)), train_size=int(max_customers), stratify=labels, random_state=random_state
            )[0]
        )
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


# --------------------------------------------------------------------------- artifact


def _versions() -> dict[str, str]:
    return {"sklearn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__}


def save_churn_model(model: ChurnModel | BaselineChurnModel, path: str | Path) -> None:
    """Write a fitted model with its feature list and package versions (no training data).

    The file is a pickle (what scikit-learn documents for persistence): load only
    files this pipeline wrote.
    """
    check_is_fitted(model)
    header = {
        "kind": _ARTIFACT_KIND,
        "format": _ARTIFACT_FORMAT,
        "model_class": type(model).__name__,
        "feature_names": list(model.feature_names_in_),
        "versions": _versions(),
    }
    with open(path, "wb") as handle:
        pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)


def load_churn_model(path: str | Path) -> ChurnModel | BaselineChurnModel:
    """Read a model written by ``save_churn_model``.

    The header is read before the model, so a file from another scikit-learn version
    is refused with a clear message instead of being unpickled (scikit-learn does not
    support loading a model across versions).
    """
    with open(path, "rb") as handle:
        header = pickle.load(handle)
        if not isinstance(header, dict) or header.get("kind") != _ARTIFACT_KIND:
            raise ValueError(f"{path} is not a churn model written by save_churn_model")
        if header.get("format") != _ARTIFACT_FORMAT:
            raise ValueError(f"{path} has artifact format {header.get('format')}, expected {_ARTIFACT_FORMAT}")
        saved = header["versions"]["sklearn"]
        if saved != sklearn.__version__:
            raise ValueError(
                f"{path} was saved with scikit-learn {saved} but this is {sklearn.__version__}; "
                "refit the churn model with the installed version."
            )
        model = pickle.load(handle)
    model.versions_ = header["versions"]
    if list(model.feature_names_in_) != header["feature_names"]:
        raise ValueError(f"{path} is inconsistent: its header and model list different features")
    return model
