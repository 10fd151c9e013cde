"""Churn-risk step: dated features and labels in DuckDB, out-of-time validation, scores.

With H = the horizon in days:

- train: features at ``as_of - 2H``, labels from the H days after it;
- test: features at ``as_of - H``, labels from the H days after it (ending at as_of);
- the model is compared with the baselines on the test set, the better scorer is refit
  on the latest labelled cutoff (``as_of - H``) and scores everyone with a completed
  order on or before ``as_of`` from features at ``as_of``.

Nothing dated after ``as_of`` is read. The functions take a DuckDB connection and
explicit arguments; reading settings and writing tables is the caller's job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from models.churn import (
    BASELINE_SCORES,
    DEFAULT_MAX_IMPORTANCE_CUSTOMERS,
    IMPORTANCES_SCHEMA,
    LABEL_COLUMN,
    METRICS_SCHEMA,
    SCORES_SCHEMA,
    BaselineChurnModel,
    ChurnModel,
    assign_churn_bands,
    build_churn_scores,
    choose_published_scorer,
    compute_churn_metrics,
    compute_permutation_importances,
    load_churn_training,
    save_churn_model,
    save_churn_training,
    score_without_labels,
    select_feature_columns,
    stratified_rows,
    verdict_metrics,
)
from models.churn.model import PREDICT_CHUNK_ROWS
from models.churn.reasons import churn_reasons
from pipelines import execution
from pipelines.core.identity import identity_as_known_at
from pipelines.scoring.labelled import LabelledFrame
from pipelines.scoring.model_log import record_model_outputs
from pipelines.sqlrun import ensure_bookkeeping_tables, run_sql

log = logging.getLogger(__name__)

REQUIRED_TABLES = (
    "core.transactions",
    "core.customers",
    "core.events",
    "core.customer_records",
    "core.customer_map",
)
BGNBD_COLUMNS = ("customer_id", "p_alive", "expected_purchases", "p_no_purchase")
# A class this small cannot be split into calibration folds or give a stable AUC.
MIN_CUSTOMERS_PER_CLASS = 10

BgnbdScorer = Callable[[date], pl.DataFrame]


@dataclass(frozen=True)
class ChurnResult:
    """What one churn run produced.

    Attributes
    ----------
    scores : polars.DataFrame
        One row per customer with a completed order on or before ``as_of``:
        customer_id, churn_probability, churn_band.
    metrics : polars.DataFrame
        model, metric, value, baseline (test-set metrics; empty after a fallback).
    importances : polars.DataFrame
        feature, importance_mean, importance_std (empty after a fallback).
    model : ChurnModel, BaselineChurnModel or None
        The scorer that produced ``scores``, refit on the latest labelled cutoff;
        None after a fallback.
    fallback_reason : str or None
        One sentence when the model could not be validated, else None.
    published_scorer : str
        "model", "recency" or "p_no_purchase" (Platt-scaled baselines), or
        "fallback_p_no_purchase" / "fallback_recency_rank", or "none" when nobody is scored.
    model_beats_baselines : bool or None
        Whether the model's test ROC AUC beat the best baseline's by a significant margin
        (the 95% DeLong interval of the difference above 0; None after a fallback).
    message : str
        One sentence for the run log: the publish decision or the fallback reason.
    as_of, train_cutoff, test_cutoff : date
        Scoring date and the two validation cutoffs (training_date - 2H, training_date - H).
    horizon_days : int
        H.
    training_date : date
        The date the scorer was trained as of (the latest date of the retraining grid on
        or before as_of; as_of itself without a grid).
    reused : bool
        Whether the scorer and its metrics were those saved by an earlier run trained on
        identical data (see :func:`run_churn`).
    """

    scores: pl.DataFrame
    metrics: pl.DataFrame
    importances: pl.DataFrame
    model: ChurnModel | BaselineChurnModel | None
    fallback_reason: str | None
    published_scorer: str
    model_beats_baselines: bool | None
    message: str
    as_of: date
    train_cutoff: date
    test_cutoff: date
    horizon_days: int
    training_date: date
    reused: bool = False


# --------------------------------------------------------------------------- SQL


def _check_core_tables(con: duckdb.DuckDBPyConnection) -> None:
    present = {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "select table_schema, table_name from information_schema.tables where table_schema = 'core'"
        ).fetchall()
    }
    missing = [table for table in REQUIRED_TABLES if table not in present]
    if missing:
        raise ValueError(
            f"The churn model needs {', '.join(missing)} (see docs/core_tables.md); "
            "build the core layer first (an absent source should give an empty table)."
        )


#: ``(name, params)`` -> builds the table of ``sql/<name>.sql`` on the warehouse: run_sql
#: there by default; the pipeline passes the execution runner's seam, which builds it per
#: customer bucket on Dask with ``[execution] runner = "dask"``
CustomerSql = Callable[[str, dict], None]


def _run_model_sql(
    con: duckdb.DuckDBPyConnection,
    table: str,
    parameters: dict,
    customer_sql: CustomerSql | None = None,
    fetch: bool = True,
) -> pl.DataFrame | None:
    # `table` is one of this module's own constants, never user input.
    _check_core_tables(con)
    if customer_sql is None:
        run_sql(con, f"models/{table}", parameters)
    else:
        customer_sql(f"models/{table}", parameters)
    return _table_frame(con, table) if fetch else None


def _table_frame(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    # Sorted by polars, several times faster than DuckDB's ORDER BY on a million ids.
    return con.sql(f"select * from models.{table}").pl().sort("customer_id")


def build_churn_features(
    con: duckdb.DuckDBPyConnection,
    cutoff: date,
    customer_sql: CustomerSql | None = None,
    *,
    fetch: bool = True,
) -> pl.DataFrame | None:
    """(Re)build ``models.churn_features`` at ``cutoff`` and return it, sorted by customer_id
    (None with ``fetch=False``: the table alone).

    One row per customer with a completed order on or before ``cutoff``, using only rows
    dated on or before it; day counts in days, amounts in currency units. Reads
    core.transactions, core.events, core.customer_records and core.customer_map, with
    ``customer_sql`` when given (see :data:`CustomerSql`).
    """
    return _run_model_sql(
        con, "churn_features", {"cutoff": _as_date(cutoff)}, customer_sql, fetch=fetch
    )


def _features_at(con: duckdb.DuckDBPyConnection, cutoff: date) -> pl.DataFrame:
    """The features at ``cutoff`` without storing them, from the ``churn_features_at``
    macro that :func:`build_churn_features` defines on this connection (call it first)."""
    return (
        con.sql("select * from churn_features_at($cutoff)", params={"cutoff": _as_date(cutoff)})
        .pl()
        .sort("customer_id")
    )


def build_churn_labels(
    con: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int, *, fetch: bool = True
) -> pl.DataFrame | None:
    """(Re)build ``models.churn_labels`` at ``cutoff`` and return it (None with
    ``fetch=False``: the table alone).

    One row per customer with a completed order on or before ``cutoff``: customer_id,
    is_churned (no completed order in (cutoff, cutoff + horizon_days]), horizon_days,
    cutoff_date, horizon_end_date.
    """
    return _run_model_sql(
        con,
        "churn_labels",
        {"cutoff": _as_date(cutoff), "horizon_days": _check_horizon(horizon_days)},
        fetch=fetch,
    )


# --------------------------------------------------------------------------- helpers


def _as_date(value: date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if not isinstance(value, date):
        raise TypeError(f"expected a date, got {type(value).__name__}")
    return value


def _check_horizon(horizon_days: int) -> int:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or horizon_days <= 0:
        raise ValueError(
            f"horizon_days must be a positive whole number of days, got {horizon_days!r}"
        )
    return horizon_days


def _bgnbd_scores(bgnbd_scorer: BgnbdScorer | None, cutoff: date) -> pl.DataFrame | None:
    """p_alive, expected_purchases and p_no_purchase (P(no purchase in the horizon)) per
    customer at ``cutoff`` from the customer-base model scorer, checked and typed; None
    without a scorer."""
    if bgnbd_scorer is None:
        return None
    scores = bgnbd_scorer(cutoff)
    if not isinstance(scores, pl.DataFrame):
        raise TypeError(
            f"the BG/NBD scorer must return a polars DataFrame, got {type(scores).__name__}"
        )
    missing = [name for name in BGNBD_COLUMNS if name not in scores.columns]
    if missing:
        raise ValueError(f"the BG/NBD scores at {cutoff} lack the column(s) {', '.join(missing)}")
    scores = scores.select(
        pl.col("customer_id").cast(pl.String),
        pl.col("p_alive").cast(pl.Float64),
        pl.col("expected_purchases").cast(pl.Float64),
        pl.col("p_no_purchase").cast(pl.Float64),
    )
    if scores["customer_id"].is_duplicated().any():
        raise ValueError(f"the BG/NBD scores at {cutoff} have more than one row for some customers")
    return scores


def _with_bgnbd(features: pl.DataFrame, scores: pl.DataFrame | None) -> pl.DataFrame:
    """``features`` with the columns of :func:`_bgnbd_scores` (null for a customer they do
    not cover), in the features' row order; unchanged without scores."""
    if scores is None:
        return features
    return features.join(scores, on="customer_id", how="left", maintain_order="left")


def _labelled_name(cutoff: date) -> str:
    return f"churn_labelled_{cutoff:%Y%m%d}"


def _build_labelled(
    con: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int
) -> LabelledFrame:
    """The labelled frame at ``cutoff`` on ``con``: the features from the
    ``churn_features_at`` macro (see :func:`_features_at`) with ``is_churned`` from
    ``models.churn_labels``, rebuilt at the cutoff."""
    build_churn_labels(con, cutoff, horizon_days, fetch=False)
    # Both hold exactly the customers with a completed order by the cutoff.
    return LabelledFrame.create(
        con,
        _labelled_name(cutoff),
        f"select f.*, l.{LABEL_COLUMN} from churn_features_at($cutoff) f "
        "join models.churn_labels l on l.customer_id = f.customer_id",
        {"cutoff": _as_date(cutoff)},
    )


def churn_labelled_bucket(
    con: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int
) -> duckdb.DuckDBPyRelation:
    """On a Dask worker: one bucket's labelled frame at ``cutoff`` (see
    :func:`_build_labelled`): the churn features and ``is_churned`` of its customers with a
    completed order by then, from its core tables as known at the training date."""
    run_sql(con, "models/churn_features", {"cutoff": cutoff})
    run_sql(con, "models/churn_labels", {"cutoff": cutoff, "horizon_days": horizon_days})
    return con.sql(
        f"select f.*, l.{LABEL_COLUMN} from models.churn_features f "
        "join models.churn_labels l on l.customer_id = f.customer_id"
    )


#: ``(cutoff, horizon_days) -> LabelledFrame``: the labelled frame at a validation cutoff
#: (what :func:`_build_labelled` gives), built per customer bucket on Dask
#: (:func:`churn_labelled_bucket`)
LabelledFrames = Callable[[date, int], LabelledFrame]


def _check_labelled(
    labelled: LabelledFrame, role: str, cutoff: date, min_labelled: int
) -> str | None:
    """Why this labelled set cannot train or test a model, or None."""
    n = labelled.height
    if n < min_labelled:
        return (
            f"Too few labelled customers at the {role} cutoff {cutoff}: {n}, "
            f"fewer than the minimum of {min_labelled}"
        )
    churned = int(labelled.labels().sum())
    retained = n - churned
    if churned == 0 or retained == 0:
        outcome = "churned" if retained == 0 else "bought again"
        return f"Only one class at the {role} cutoff {cutoff}: all {n} labelled customers {outcome}"
    if min(churned, retained) < MIN_CUSTOMERS_PER_CLASS:
        return (
            f"Too few of one class at the {role} cutoff {cutoff}: {churned} churned and "
            f"{retained} retained customers, fewer than {MIN_CUSTOMERS_PER_CLASS} of one"
        )
    return None


def score_customers(
    current: pl.DataFrame,
    scorer: ChurnModel | BaselineChurnModel,
    published: str,
    features: list[str],
    band_cutoffs: tuple[float, float],
    horizon_days: int,
) -> pl.DataFrame:
    """The published scores of the customers in ``current`` (their features at as_of with
    the BG/NBD columns, one row per customer, sorted by customer_id) from a fitted scorer:
    customer_id, churn_probability, churn_band and churn_reasons, in ``current``'s order.
    The model reads the columns ``features``, a baseline ("recency", "p_no_purchase") the
    whole frame. Row by row: any split of the customers gives the same rows."""
    if current.is_empty():  # a bucket without customers (scikit-learn refuses 0 rows)
        return pl.DataFrame(schema=SCORES_SCHEMA)
    frame = current.select(features) if published == "model" else current
    probabilities = scorer.predict_proba(frame)[:, 1]
    return _scores_with_reasons(
        current, frame, probabilities, band_cutoffs, scorer, published, horizon_days
    )


def churn_scores_bucket(
    con: duckdb.DuckDBPyConnection, with_bgnbd: bool, **scoring
) -> pl.DataFrame:
    """On a Dask worker: :func:`score_customers` of one bucket's customers, from its
    ``models.churn_features`` rows at as_of joined with its ``models.churn_bgnbd`` rows (the
    BG/NBD scores at as_of) when ``with_bgnbd``; ``scoring`` are score_customers' other
    arguments."""
    current = con.sql("select * from models.churn_features").pl().sort("customer_id")
    if with_bgnbd:
        columns = ", ".join(BGNBD_COLUMNS)
        current = _with_bgnbd(current, con.sql(f"select {columns} from models.churn_bgnbd").pl())
    return score_customers(current, **scoring)


#: ``(bgnbd, **scoring) -> scores``: :func:`score_customers` of every customer of
#: ``models.churn_features`` with the BG/NBD scores at as_of ``bgnbd`` (or None), done per
#: customer bucket on Dask (:func:`churn_scores_bucket`); the scores sorted by customer_id
BucketScoring = Callable[..., pl.DataFrame]


def _scores_with_reasons(
    current: pl.DataFrame,
    frame: pl.DataFrame,
    probabilities,
    band_cutoffs: tuple[float, float],
    scorer,
    published_scorer: str,
    horizon_days: int,
) -> pl.DataFrame:
    """The scores frame of the customers in ``current`` (customer_id, in order) with
    ``churn_reasons`` from the published scorer; ``frame`` is what the scorer saw, one row
    per customer in the same order (the phrases read its feature values)."""
    scores = build_churn_scores(current["customer_id"], probabilities, band_cutoffs)
    reasons = churn_reasons(scorer, published_scorer, frame, scores["churn_band"], horizon_days)
    return scores.with_columns(pl.Series("churn_reasons", reasons, dtype=pl.String))


def _fallback(
    current: pl.DataFrame, reason: str, band_cutoffs: tuple[float, float], **context
) -> ChurnResult:
    probabilities, source = score_without_labels(current)
    what = (
        "the customer-base model's P(no purchase in the horizon)"
        if source == "p_no_purchase"
        else "recency percentiles (days since the last order ranked from 0 to 1)"
    )
    sentence = f"{reason}, so the published churn scores are {what}, not a validated model."
    log.warning(sentence)
    published = "fallback_p_no_purchase" if source == "p_no_purchase" else "fallback_recency_rank"
    return ChurnResult(
        scores=_scores_with_reasons(
            current, current, probabilities, band_cutoffs, None, published, context["horizon_days"]
        ),
        metrics=pl.DataFrame(schema=METRICS_SCHEMA),
        importances=pl.DataFrame(schema=IMPORTANCES_SCHEMA),
        model=None,
        fallback_reason=sentence,
        published_scorer=published,
        model_beats_baselines=None,
        message=sentence,
        **context,
    )


class _Timer:
    """Wall seconds per part of the step, for the log (``with timer("part"): ...``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - started

    def __str__(self) -> str:
        return ", ".join(f"{part} {seconds:.1f} s" for part, seconds in self.seconds.items())


# Bump when the protocol or the model changes what the same training frames give.
TRAINING_VERSION = 3
# The retraining grid: dates 2000-01-03 (a Monday) + k * retrain_every_days.
RETRAIN_EPOCH = date(2000, 1, 3)


def churn_training_date(as_of: date, retrain_every_days: int) -> date:
    """The latest date of the retraining grid on or before ``as_of``: the churn model is
    trained as of that date, so that every run between two grid dates, and a full refresh
    at any of them, trains on the same cutoffs."""
    as_of = _as_date(as_of)
    if retrain_every_days < 1:
        raise ValueError(f"retrain_every_days must be at least 1, got {retrain_every_days}")
    steps = (as_of - RETRAIN_EPOCH).days // retrain_every_days
    return RETRAIN_EPOCH + timedelta(days=steps * retrain_every_days)


def _training_inputs_key(
    con: duckdb.DuckDBPyConnection,
    horizon_days: int,
    seed: int,
    training_date: date,
    training_settings: str,
) -> str:
    """Digest of the training data: every row of the tables the features, labels and
    BG/NBD inputs are computed from (a sum of row hashes: order-free; inside
    :func:`identity_as_known_at` the tables as known at the training date), with the
    protocol's settings and the versions of the SQL that computes them and of the
    packages."""
    import hashlib

    import duckdb as duckdb_module
    import lifetimes
    import sklearn

    from pipelines.sqlrun import read_sql

    parts = [
        TRAINING_VERSION,
        sklearn.__version__,
        lifetimes.__version__,
        duckdb_module.__version__,
        pl.__version__,
        horizon_days,
        seed,
        str(training_date),
        training_settings,
    ]
    parts += [
        read_sql(name)
        for name in ("models/churn_features", "models/churn_labels", "models/clv_summary")
    ]
    for table in ("core.transactions", "core.events", "core.customer_records"):
        parts.append(
            con.execute(f"select count(*), sum(hash(t)::hugeint) from {table} t").fetchall()
        )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def _score_with_saved(saved: dict, score_as_of, context: dict) -> ChurnResult:
    """The result of a scorer saved by an earlier run, scoring the customers at as_of
    (``score_as_of(scorer, published, features)``)."""
    model = saved["model"]
    return ChurnResult(
        scores=score_as_of(model, saved["published"], saved["features"]),
        metrics=saved["metrics"],
        importances=saved["importances"],
        model=model,
        fallback_reason=None,
        published_scorer=saved["published"],
        model_beats_baselines=saved["beats"],
        message=saved["message"],
        reused=True,
        **context,
    )


def _count_customers(con: duckdb.DuckDBPyConnection, current: pl.DataFrame | None) -> int:
    """The customers to score at as_of: ``current``'s rows, else models.churn_features'."""
    if current is not None:
        return current.height
    return con.execute("select count(*) from models.churn_features").fetchall()[0][0]


def _covers_any(
    con: duckdb.DuckDBPyConnection, current: pl.DataFrame | None, bgnbd: pl.DataFrame | None
) -> bool:
    """Whether the BG/NBD scores at as_of give a p_no_purchase for any customer to score."""
    if current is not None:
        return "p_no_purchase" in current.columns and current["p_no_purchase"].is_not_null().any()
    if bgnbd is None:
        return False
    con.register("_bgnbd_now", bgnbd)
    try:
        [(found,)] = con.execute(
            "select exists (select 1 from models.churn_features f join _bgnbd_now b "
            "on b.customer_id = f.customer_id where b.p_no_purchase is not null)"
        ).fetchall()
    finally:
        con.unregister("_bgnbd_now")
    return bool(found)


# --------------------------------------------------------------------------- the step


def run_churn(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    horizon_days: int,
    bgnbd_scorer: BgnbdScorer | None = None,
    band_cutoffs: tuple[float, float] = (0.33, 0.66),
    min_labelled: int = 200,
    seed: int = 0,
    training_date: date | None = None,
    model_store: Path | None = None,
    identity_as_known: bool = False,
    training_settings: str = "",
    customer_sql: CustomerSql | None = None,
    bucket_scoring: BucketScoring | None = None,
    labelled_frames: LabelledFrames | None = None,
) -> ChurnResult:
    """Validate the churn model out of time and score every customer at ``as_of``.

    Parameters
    ----------
    con : duckdb connection holding core.transactions, core.customers, core.events.
        ``models.churn_features`` (at as_of) is left behind as a side effect, and
        ``models.churn_labels`` (at the latest labelled cutoff) where the labelled frames
        are built on ``con``. The two labelled frames are temporary tables on ``con``
        while the step runs (:class:`~pipelines.scoring.labelled.LabelledFrame`).
    as_of : date
        Observation date; nothing after it is read.
    horizon_days : int
        H: a customer churned when they place no completed order in the H days after
        a cutoff.
    bgnbd_scorer : callable (cutoff: date) -> polars.DataFrame, optional
        customer_id, p_alive, expected_purchases, p_no_purchase (P(no purchase in the
        horizon)) from the customer-base model fit on data up to that cutoff only. Used as
        features, as the ``p_no_purchase`` baseline and as the fallback score. Without it
        the model and fallback use no customer-base model inputs.
    band_cutoffs : (low, high)
        churn_band is low below ``low``, high at or above ``high``, medium between.
    min_labelled : int
        Fewest labelled customers at each of the two validation cutoffs.
    seed : int
        Seeds the model and the permutation importances.
    training_date : date, optional
        The date the protocol runs at (cutoffs training_date - 2H and - H); default as_of.
        The published scorer, trained there, scores the features at as_of.
    model_store : directory, optional
        Where a validated scorer is saved with its metrics, keyed by a digest of exactly
        what trains it: every row of the tables the training frames are computed from
        (as known at the training date with ``identity_as_known``), the protocol's
        settings and the code's version. A later run with the same key reuses it without
        building the frames or fitting, which gives the scores a fit would (the fits are
        seeded), so a daily run and a full refresh publish the same scores.

    identity_as_known : bool
        Build the training frames from the data as known at the training date, customers
        identified by the records known then (:func:`identity_as_known_at`), so that a
        record delivered later that merges two customers does not change them (and the
        saved scorer stays valid). The scores at as_of always use today's identities.
    training_settings : str
        What else decides the training data, part of the saved scorer's key: the BG/NBD
        scorer's settings.
    customer_sql : callable (name, params) -> None, optional
        Builds the features at as_of (the part of a daily run that reuses its scorer that
        grows with the customers): by default run_sql on ``con``; the pipeline's seam runs
        it per customer bucket on Dask. The frames at the validation cutoffs are built on
        ``con``, from the identities as known at the training date.
    bucket_scoring : callable, optional
        Scores the customers at as_of without bringing their features into this process
        (see :data:`BucketScoring`): the pipeline's Dask seam. By default they are read
        from ``models.churn_features`` and scored here (and always for a fallback, whose
        recency ranks are over all customers at once).
    labelled_frames : callable (cutoff, horizon_days) -> LabelledFrame, optional
        Builds the labelled frames at the two validation cutoffs (inside the identities as
        known at the training date with ``identity_as_known``): the pipeline's Dask seam
        (see :data:`LabelledFrames`). By default they are built on ``con``.

    Returns
    -------
    ChurnResult
    """
    as_of = _as_date(as_of)
    horizon_days = _check_horizon(horizon_days)
    assign_churn_bands([], band_cutoffs)  # refuse bad cut-offs before any work
    if min_labelled < 1:
        raise ValueError(f"min_labelled must be at least 1, got {min_labelled}")
    training_date = _as_date(training_date or as_of)
    if training_date > as_of:
        raise ValueError(f"training_date {training_date} is after as_of {as_of}")
    train_cutoff = training_date - timedelta(days=2 * horizon_days)
    test_cutoff = training_date - timedelta(days=horizon_days)
    context = dict(
        as_of=as_of,
        train_cutoff=train_cutoff,
        test_cutoff=test_cutoff,
        horizon_days=horizon_days,
        training_date=training_date,
    )

    _check_core_tables(con)
    # fetchall, not fetchone: DuckDB 2 refuses further work on a connection whose last
    # result was not read to the end.
    [(first_order_date,)] = con.execute(
        "select min(order_date) from core.transactions where is_completed_order and order_date <= $as_of",
        {"as_of": as_of},
    ).fetchall()
    reason = None
    if first_order_date is not None and first_order_date > train_cutoff:
        reason = (
            f"History too short for out-of-time validation: the first completed order is on "
            f"{first_order_date}, after the training cutoff {train_cutoff} "
            f"(two {horizon_days}-day horizons before the training date {training_date})"
        )
    # Features at as_of first: they stay in models.churn_features, and building them defines
    # the macro that gives the features at the two validation cutoffs without storing them.
    # The labels are built at the training cutoff, then at the test cutoff, so that
    # models.churn_labels (on con) ends at the latest labelled cutoff. The BG/NBD scorer is
    # called at the validation cutoffs only once we know there is enough data to validate.
    timer = _Timer()
    with timer("features at as_of"):
        current_features = build_churn_features(
            con, as_of, customer_sql, fetch=bucket_scoring is None
        )
    train = test = saved = key = None
    if first_order_date is not None and reason is None:
        with (
            timer("features, labels and BG/NBD at the validation cutoffs"),
            identity_as_known_at(con, training_date) if identity_as_known else nullcontext(),
        ):
            if model_store is not None:
                # the training frames are computed from these tables' rows alone, so a
                # digest of them finds a saved scorer without building the frames
                key = _training_inputs_key(
                    con, horizon_days, seed, training_date, training_settings
                )
                saved = load_churn_training(model_store / f"churn-training-{key}.pkl")
            if saved is None:
                build = labelled_frames or (lambda cutoff, h: _build_labelled(con, cutoff, h))
                train = build(train_cutoff, horizon_days)
                test = build(test_cutoff, horizon_days)
                reason = _check_labelled(
                    train, "training", train_cutoff, min_labelled
                ) or _check_labelled(test, "test", test_cutoff, min_labelled)
                if reason is None:
                    train = train.with_columns(_bgnbd_scores(bgnbd_scorer, train_cutoff))
                    test = test.with_columns(_bgnbd_scores(bgnbd_scorer, test_cutoff))
                else:
                    train.drop()
                    test.drop()

    with timer("BG/NBD at as_of"):
        bgnbd_now = _bgnbd_scores(bgnbd_scorer, as_of)
    current = None if current_features is None else _with_bgnbd(current_features, bgnbd_now)
    del current_features

    def score_as_of(scorer, published: str, features: list[str]) -> pl.DataFrame:
        scoring = dict(
            scorer=scorer,
            published=published,
            features=features,
            band_cutoffs=band_cutoffs,
            horizon_days=horizon_days,
        )
        if current is None:
            return bucket_scoring(bgnbd_now, **scoring)
        return score_customers(current, **scoring)

    if _count_customers(con, current) == 0:
        sentence = (
            f"No customer has a completed order on or before {as_of}, so there is nothing to score."
        )
        return ChurnResult(
            scores=pl.DataFrame(schema=SCORES_SCHEMA),
            metrics=pl.DataFrame(schema=METRICS_SCHEMA),
            importances=pl.DataFrame(schema=IMPORTANCES_SCHEMA),
            model=None,
            fallback_reason=sentence,
            published_scorer="none",
            model_beats_baselines=None,
            message=sentence,
            **context,
        )
    if saved is None and reason is not None:
        if current is None:
            current = _with_bgnbd(_table_frame(con, "churn_features"), bgnbd_now)
        return _fallback(current, reason, band_cutoffs, **context)
    if saved is not None:
        with timer("scores at as_of (saved scorer)"):
            result = _score_with_saved(saved, score_as_of, context)
        log.info("churn: reused the scorer trained as of %s (%s); %s", training_date, key, timer)
        return result
    # The labelled frames stay in DuckDB (see pipelines/scoring/labelled.py): each use
    # below fetches the columns and rows it reads.
    features = select_feature_columns(train.empty())
    y_train, y_test = train.labels(), test.labels()

    with timer("model fit at the training cutoff"):
        model = _fit_on_sample(ChurnModel(random_state=seed), train, features, y_train)
    log.info(
        "churn model fit on %d of %d labelled customers at %s",
        model.n_train_customers_,
        train.height,
        train_cutoff,
    )
    with timer("test-set scores"):
        test_probability = np.concatenate(
            [
                model.predict_proba(chunk)[:, 1]
                for chunk in test.chunks(features, PREDICT_CHUNK_ROWS)
            ]
        )

    # The P(no purchase) baseline only where the scorer covered customers at all three
    # dates (a scorer may return an empty frame where its fit failed).
    has_p_no_purchase = (
        "p_no_purchase" in features
        and all(frame.covers("p_no_purchase") for frame in (train, test))
        and _covers_any(con, current, bgnbd_now)
    )
    if bgnbd_scorer is not None and not has_p_no_purchase:
        log.warning(
            "customer-base model scores are missing at one of %s, %s, %s: "
            "no p_no_purchase baseline",
            train_cutoff,
            test_cutoff,
            as_of,
        )
    with timer("baselines and metrics"):
        baselines = {}
        for name in ("recency", "p_no_purchase") if has_p_no_purchase else ("recency",):
            column = [BASELINE_SCORES[name]]
            baseline = BaselineChurnModel(name).fit(train.select(column), y_train)
            scored = test.select(column)
            baselines[name] = (baseline.score_raw(scored), baseline.predict_proba(scored)[:, 1])
        train.drop()  # the last use of the training frame
        metrics = compute_churn_metrics(y_test, test_probability, baselines)
    with timer("permutation importances"):
        # the rows compute_permutation_importances would sample from the whole test set
        keep = stratified_rows(y_test, DEFAULT_MAX_IMPORTANCE_CUSTOMERS, seed)
        importances = compute_permutation_importances(
            model,
            test.select(features, keep),
            y_test if keep is None else y_test.gather(keep),
            random_state=seed,
        )
    published, beats, message = choose_published_scorer(metrics)
    metrics = pl.concat([metrics, verdict_metrics(metrics, published)])
    log.info(message)

    # Refit the published scorer on the latest labelled cutoff, then score as_of. The refit
    # keeps the class weighting the validated model settled on, so that the published
    # model is the one the test metrics describe ("auto" would decide again on the test
    # cutoff's churn rate; balanced weights made the 1M-customer refit twice as slow).
    with timer("refit at the test cutoff"):
        if published == "model":
            final = _fit_on_sample(
                ChurnModel(**{**model.get_params(), "class_weight": model.class_weight_}),
                test,
                features,
                y_test,
            )
        else:
            final = BaselineChurnModel(published).fit(
                test.select([BASELINE_SCORES[published]]), y_test
            )
    test.drop()
    with timer("scores and churn reasons at as_of"):
        scores = score_as_of(final, published, features)
    log.info("churn step times: %s", timer)
    if model_store is not None:
        save_churn_training(
            model_store / f"churn-training-{key}.pkl",
            {
                "model": final,
                "features": features,
                "metrics": metrics,
                "importances": importances,
                "published": published,
                "beats": beats,
                "message": message,
            },
        )

    return ChurnResult(
        scores=scores,
        metrics=metrics,
        importances=importances,
        model=final,
        fallback_reason=None,
        published_scorer=published,
        model_beats_baselines=beats,
        message=message,
        **context,
    )


def _fit_on_sample(
    model: ChurnModel, frame: LabelledFrame, features: list[str], labels: pl.Series
) -> ChurnModel:
    """``model`` fit on the ``features`` of ``frame`` with ``labels`` (its is_churned), as
    a fit on the whole frame would be: on the rows it samples (:meth:`ChurnModel.sample_rows`),
    the only ones fetched from DuckDB."""
    keep = model.sample_rows(labels)
    return model.fit(frame.select(features, keep), labels if keep is None else labels.gather(keep))


# --------------------------------------------------------------------------- pipeline step


def score_churn_risk(
    con: duckdb.DuckDBPyConnection,
    settings,
    as_of: date,
    run_id: str,
    bgnbd_scorer: BgnbdScorer | None = None,
    *,
    full_refresh: bool = False,
    bgnbd_settings: str = "",
) -> ChurnResult:
    """The pipeline's churn step: run :func:`run_churn` with the configured horizon, bands
    and seed, trained as of the retraining grid's date (``[churn] retrain_every_days``),
    reusing the scorer saved by an earlier run on identical training data unless
    ``full_refresh``; then write ``models.churn_scores`` (one row per buyer), append the run's
    metrics, importances and status to ``models.model_metrics``,
    ``models.churn_importances`` and ``models.model_runs``, and save the fitted model
    (with its feature list and versions) under ``<warehouse dir>/models/``."""

    cfg = settings.churn
    directory = settings.warehouse.path.parent / "models"
    directory.mkdir(parents=True, exist_ok=True)
    result = run_churn(
        con,
        as_of,
        settings.models.churn_horizon_days,
        bgnbd_scorer,
        band_cutoffs=cfg.band_cutoffs,
        min_labelled=cfg.min_labelled_customers,
        seed=cfg.seed,
        training_date=churn_training_date(as_of, cfg.retrain_every_days),
        model_store=None if full_refresh else directory,
        identity_as_known=True,
        training_settings=repr((settings.models, bgnbd_settings)),
        customer_sql=lambda name, params: execution.run_customer_sql(
            con, settings, run_id, name, params
        ),
        bucket_scoring=_bucket_scoring(con, settings, run_id)
        if execution.on_dask(settings)
        else None,
        labelled_frames=_bucket_labelled(con, settings, run_id)
        if execution.on_dask(settings)
        else None,
    )
    con.register(
        "_churn_scores",
        result.scores.select("customer_id", "churn_probability", "churn_band", "churn_reasons"),
    )
    con.execute("create or replace table models.churn_scores as select * from _churn_scores")
    con.unregister("_churn_scores")
    status = "fallback" if result.fallback_reason else "fitted"
    record_model_outputs(
        con, run_id, metrics=result.metrics, runs=[("churn", status, result.message)]
    )
    ensure_bookkeeping_tables(con)
    if result.importances.height:
        con.register(
            "_importances",
            result.importances.select("feature", "importance_mean", "importance_std"),
        )
        con.execute(
            "insert into models.churn_importances select $run_id, * from _importances",
            {"run_id": run_id},
        )
        con.unregister("_importances")
    if result.model is not None:
        save_churn_model(result.model, directory / f"churn-{run_id}.model")
    return result


def _bucket_scoring(con: duckdb.DuckDBPyConnection, settings, run_id: str) -> BucketScoring:
    """The Dask runner's :data:`BucketScoring`: the BG/NBD scores at as_of written as
    bucket files, then :func:`churn_scores_bucket` per bucket, beside the bucket's
    features at as_of (the ``models/churn_features`` stage's output)."""

    def score(bgnbd: pl.DataFrame | None, **scoring) -> pl.DataFrame:
        inputs = ("models.churn_features",)
        if bgnbd is not None:
            execution.write_frame_buckets(con, settings, run_id, "models.churn_bgnbd", bgnbd)
            inputs += ("models.churn_bgnbd",)
        results = execution.map_buckets(
            settings,
            run_id,
            "models/churn_scores",
            fn=churn_scores_bucket,
            kwargs={"with_bgnbd": bgnbd is not None, **scoring},
            inputs=inputs,
        )
        return execution.pool_frame(results).sort("customer_id")

    return score


def _bucket_labelled(con: duckdb.DuckDBPyConnection, settings, run_id: str) -> LabelledFrames:
    """The Dask runner's :data:`LabelledFrames`. Called inside ``identity_as_known_at``: the
    first call writes the core tables as known at the training date as bucket files
    (layer "known_at"), then each cutoff's frame is :func:`churn_labelled_bucket` per
    bucket, pooled into a :class:`LabelledFrame` on ``con``."""
    known_at_written = False

    def labelled(cutoff: date, horizon_days: int) -> LabelledFrame:
        nonlocal known_at_written
        if not known_at_written:
            execution.write_core_buckets(con, settings, run_id, layer="known_at")
            known_at_written = True
        results = execution.map_buckets(
            settings,
            run_id,
            f"models/{_labelled_name(cutoff)}",
            fn=churn_labelled_bucket,
            kwargs={"cutoff": cutoff, "horizon_days": horizon_days},
            layer="known_at",
        )
        with execution.bucket_rows(results) as (query, params):
            return LabelledFrame.create(con, _labelled_name(cutoff), query, params)

    return labelled
