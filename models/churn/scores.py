"""Published churn scores: probability bands and the one-row-per-customer scores frame."""

from __future__ import annotations

import numpy as np
import polars as pl

SCORES_SCHEMA = {
    "customer_id": pl.String,
    "churn_probability": pl.Float64,
    "churn_band": pl.String,
    "churn_reasons": pl.String,
}


def assign_churn_bands(probabilities, cutoffs: tuple[float, float] = (0.33, 0.66)) -> pl.Series:
    """low below the first cut-off, high at or above the second, medium between."""
    low, high = cutoffs
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"band cut-offs must satisfy 0 <= low < high <= 1, got {cutoffs}")
    p = pl.Series("churn_probability", np.asarray(probabilities, dtype=float))
    return (
        pl.select(
            pl.when(p < low)
            .then(pl.lit("low"))
            .when(p < high)
            .then(pl.lit("medium"))
            .otherwise(pl.lit("high"))
        )
        .to_series()
        .alias("churn_band")
    )


def build_churn_scores(
    customer_ids, probabilities, cutoffs: tuple[float, float] = (0.33, 0.66), reasons=None
) -> pl.DataFrame:
    """One row per customer: customer_id, churn_probability, churn_band, churn_reasons (the
    phrases of ``models.churn.reasons``, one per customer or None; all None when not given)."""
    probabilities = np.asarray(probabilities, dtype=float)
    if reasons is None:
        reasons = [None] * len(probabilities)
    return pl.DataFrame(
        {
            "customer_id": pl.Series(customer_ids, dtype=pl.String),
            "churn_probability": probabilities,
            "churn_band": assign_churn_bands(probabilities, cutoffs),
            "churn_reasons": pl.Series(reasons, dtype=pl.String),
        },
        schema=SCORES_SCHEMA,
    )
