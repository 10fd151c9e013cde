"""Churn frames: the columns that identify a row and hold the label, and the conversions and
checks of features and labels shared by the models and the metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import polars as pl
from sklearn.model_selection import train_test_split

ID_COLUMNS = ("customer_id", "cutoff_date")
"""Columns of the feature frame that identify a row and are never features."""

LABEL_COLUMN = "is_churned"


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
        raise TypeError(
            f"expected a polars or pandas DataFrame of features, got {type(X).__name__}"
        )
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


def stratified_rows(labels, size: int | None, random_state: int) -> np.ndarray | None:
    """The rows of a seeded sample of ``size`` rows with the labels' proportions, as sorted
    positions (so the sample keeps the frame's own order); None when there are no more than
    ``size`` rows (or ``size`` is None): then every row is used.

    The model's training sample and the permutation importances' sample are drawn with it,
    so a caller that holds the frame elsewhere (the churn step's frames in DuckDB) can fetch
    exactly the rows the model would sample from the whole frame.
    """
    labels = _check_labels(labels)
    if size is None or len(labels) <= size:
        return None
    return np.sort(
        train_test_split(
            np.arange(len(labels)), train_size=int(size), stratify=labels, random_state=random_state
        )[0]
    )


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
