"""The customer summary the CLV models fit on: its resolution, its checks, its compression.

``models.clv_summary`` (built by ``sql/models/clv_summary.sql``) has one row per customer and
resolution. This module chooses the resolution to fit on (:func:`detect_time_of_day`,
:func:`choose_resolution`), says why there is too little data to fit
(:func:`check_enough_data`), validates the columns a model reads (:func:`validate_summary`)
and groups identical rows into weights (:func:`compress_summary`). Frames in, frames out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

import numpy as np
import polars as pl

#: Resolutions of models.clv_summary.
RESOLUTIONS = ("periods", "exact")

#: The columns of models.clv_summary the BG/NBD reads, in the order its methods take them.
SUMMARY_COLUMNS = ("frequency", "recency", "T")


# --------------------------------------------------------------------------- resolution


def detect_time_of_day(
    order_at: pl.Series | Iterable[datetime] | None = None,
    *,
    min_share: float = 0.01,
    time_counts: pl.Series | Iterable[int] | None = None,
) -> bool:
    """Whether order timestamps carry a real time of day.

    Dates-only exports arrive as midnight, or, after conversion from a local zone to UTC, as one
    or two fixed times (22:00/23:00 with daylight saving time). So the two most common times of
    day are ignored: the timestamps carry a time of day when at least ``min_share`` (default 1%)
    of the non-null values have another time of day.

    Parameters
    ----------
    order_at : Series or iterable of datetime
        ``core.transactions.order_at`` values (UTC).
    min_share : float
        Share of values off the two most common times of day needed to say "time of day".
    time_counts : Series or iterable of int, optional
        Instead of ``order_at``: how many non-null timestamps have each distinct time of day
        (``count(*) ... group by order_at::time`` in SQL, so the timestamps stay in the database).
    """
    if time_counts is None:
        if order_at is None:
            raise TypeError("detect_time_of_day needs order_at or time_counts")
        values = (
            order_at if isinstance(order_at, pl.Series) else pl.Series("order_at", list(order_at))
        )
        values = values.drop_nulls()
        if values.len() == 0:
            return False
        time_counts = values.cast(pl.Datetime("us")).dt.time().value_counts().get_column("count")
    counts = (
        time_counts if isinstance(time_counts, pl.Series) else pl.Series("count", list(time_counts))
    ).cast(pl.Int64)
    total = counts.sum() if counts.len() else 0
    if not total:
        return False
    common = counts.sort(descending=True).head(2).sum()
    return (total - common) / total >= min_share


def choose_resolution(
    has_time_of_day: bool, requested: str = "auto"
) -> Literal["periods", "exact"]:
    """The resolution of ``models.clv_summary`` to fit on: ``'periods'`` or ``'exact'``.

    ``requested='auto'`` picks ``'exact'`` when the timestamps carry a time of day and
    ``'periods'`` when they are dates only (e.g. CDNOW). Measured on generated timestamped data,
    the period resolution merged ~5% of orders (same-day repeats) and biased alpha by +17%;
    with dates only the two resolutions differ only in how same-day orders count, and periods
    is what the published models and lifetimes use.

    Parameters
    ----------
    has_time_of_day : bool
        From :func:`detect_time_of_day`.
    requested : {'auto', 'periods', 'exact'}
        A setting; anything but ``'auto'`` is returned unchanged.
    """
    if requested == "auto":
        return "exact" if has_time_of_day else "periods"
    if requested in RESOLUTIONS:
        return requested
    raise ValueError(f"resolution must be one of auto, periods, exact, got {requested!r}")


# --------------------------------------------------------------------------- data checks


def check_enough_data(
    summary: pl.DataFrame,
    *,
    unit_days: int = 1,
    min_customers: int = 100,
    min_repeat_buyers: int = 30,
    min_history_days: int = 90,
) -> str | None:
    """Say in one sentence why the CLV models should not be fitted, or return None.

    Defaults: 100 customers (the BG/NBD has 4 parameters and a heavy-tailed mixing
    distribution), 30 repeat buyers (they are all the Gamma-Gamma sees, and they alone identify
    the BG/NBD dropout parameters a, b) and 90 days between the first purchase and the as-of
    date (less than a quarter rarely shows a repeat cycle).

    Parameters
    ----------
    summary : DataFrame
        ``models.clv_summary`` for one resolution: one row per customer with frequency and T.
    unit_days : int
        Unit of T (1 days, 7 weeks).
    """
    n_customers = summary.height
    if n_customers == 0:
        return "No customer has a completed order up to the as-of date."
    if n_customers < min_customers:
        return (
            f"Only {n_customers} customers have a completed order; "
            f"the CLV models need at least {min_customers}."
        )
    n_repeat = summary.filter(pl.col("frequency") > 0).height
    if n_repeat < min_repeat_buyers:
        return (
            f"Only {n_repeat} customers bought more than once; "
            f"the CLV models need at least {min_repeat_buyers} repeat buyers."
        )
    history_days = float(summary.get_column("T").max()) * unit_days
    if history_days < min_history_days:
        return (
            f"The purchase history covers only {history_days:.0f} days; "
            f"the CLV models need at least {min_history_days}."
        )
    return None


def compress_summary(
    summary: pl.DataFrame, columns: Sequence[str] = SUMMARY_COLUMNS
) -> pl.DataFrame:
    """Unique rows of ``columns`` with ``weights`` = how many customers share them.

    The likelihoods of both models depend on a customer only through these columns, so a fit on
    the compressed frame (Fader & Hardie's "condensed" data) has the same maximum as a fit on
    every customer, at a fraction of the cost.
    """
    return summary.group_by(list(columns)).agg(pl.len().alias("weights")).sort(list(columns))


def validate_summary(summary: pl.DataFrame, columns: Sequence[str], model: str) -> None:
    """Raise TypeError unless ``summary`` is a Polars frame, and ValueError (naming ``model``)
    when one of ``columns`` is missing, null, non-finite or negative."""
    if not isinstance(summary, pl.DataFrame):
        raise TypeError(
            f"{model}: summary must be a polars DataFrame, got {type(summary).__name__}"
        )
    missing = [c for c in columns if c not in summary.columns]
    if missing:
        raise ValueError(f"{model}: summary lacks column(s) {', '.join(missing)}")
    for column in columns:
        values = summary.get_column(column)
        if values.null_count() or not np.all(np.isfinite(values.cast(pl.Float64).to_numpy())):
            raise ValueError(f"{model}: column {column} has null or non-finite values")
        if (values < 0).any():
            raise ValueError(f"{model}: column {column} has negative values")
