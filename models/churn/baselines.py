"""Baselines: the one-score rules users reach for without a model (recency, and the
customer-base model's P(no purchase in the horizon)), as a Platt-scaled
``BaselineChurnModel``, and the fallback score when no model can be validated.

``1 - p_alive`` is not a baseline: the BG/NBD gives every one-time buyer p_alive = 1, so
where one-time buyers are many it ranks churners backwards (ROC AUC 0.32-0.40 measured on
CDNOW and two retail data sets, where P(no purchase in H days) from the same fit ranks 0.74
and more)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from models.churn.frames import _check_labels

BASELINE_SCORES = {
    # baseline name: the feature its score is computed from
    "recency": "days_since_last_order",
    "p_no_purchase": "p_no_purchase",
}


class BaselineChurnModel(ClassifierMixin, BaseEstimator):
    """A one-score rule users reach for, Platt-scaled into a churn probability.

    Parameters
    ----------
    score : {"recency", "p_no_purchase"}
        "recency": days since the last order (feature ``days_since_last_order``);
        "p_no_purchase": the customer-base model's probability of no purchase in the
        horizon (feature ``p_no_purchase``).
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
        return values

    def score_raw(self, X: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """The rule's own score: higher = more likely to churn (NaN where unknown)."""
        return self._raw(X)

    def _transform(self, X) -> np.ndarray:
        """The score as the Platt scaling sees it: log days for recency (a day's wait
        means more after a week than after a year), the probability of no purchase as its
        logit (clipped to [1e-6, 1 - 1e-6])."""
        raw = self._raw(X)
        if self.score == "recency":
            return np.log1p(np.clip(raw, 0, None))
        clipped = np.clip(raw, 1e-6, 1 - 1e-6)
        return np.log(clipped) - np.log1p(-clipped)

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
        self.calibrator_ = Pipeline(
            [("scale", StandardScaler()), ("platt", LogisticRegression())]
        ).fit(self._design(X), labels)
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


def score_without_labels(features: pl.DataFrame) -> tuple[np.ndarray, str]:
    """Fallback churn score when no model can be validated.

    The customer-base model's P(no purchase in the horizon) (column ``p_no_purchase``)
    where the frame has it; otherwise, or for customers it does not cover, the customer's
    recency percentile among those scored (a ranking in (0, 1], not a calibrated
    probability).

    Returns
    -------
    (scores, source) where source is "p_no_purchase" or "recency".
    """
    recency = features["days_since_last_order"].cast(pl.Float64)
    recency_rank = (recency.rank(method="average") / max(len(recency), 1)).to_numpy()
    if "p_no_purchase" in features.columns and features["p_no_purchase"].is_not_null().any():
        p_none = features["p_no_purchase"].cast(pl.Float64).to_numpy()
        scores = np.where(np.isnan(p_none), recency_rank, p_none)
        return np.clip(scores, 0.0, 1.0), "p_no_purchase"
    return recency_rank, "recency"
