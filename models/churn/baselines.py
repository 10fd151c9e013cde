"""Baselines: the one-score rules users reach for without a model (recency, BG/NBD's
``1 - p_alive``), as a Platt-scaled ``BaselineChurnModel``, and the fallback score when no
model can be validated."""

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
    "bgnbd": "p_alive",
}


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
