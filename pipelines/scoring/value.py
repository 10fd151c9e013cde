"""Customer value step: RFM, BG/NBD + Gamma-Gamma CLV, holdout check.

Reads ``core.*`` as of the run's as-of date and writes ``models.*``:

- ``models.rfm`` (SQL) and ``models.rfm_scores``: scores and segment per buyer,
- ``models.clv_summary`` (SQL; only the resolution the models use is kept),
  ``models.clv_predictions``: p_alive, expected purchases, P(order within h days), predicted
  CLV, expected next order date (the next-order ones the naive rule's where the model lost
  this run's next-order verdict),
- ``models.model_parameters`` and ``models.model_metrics``: one set per run (run_id),
- ``models.model_runs``: per model whether it was fitted, skipped or failed, and why.

The model code is in ``models/``; this module only moves frames between DuckDB and it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl

from models import clv, rfm
from models.clv.uncertainty import (
    IntervalPlan,
    add_clv_interval,
    interval_for_customers,
    plan_clv_interval,
)
from pipelines import execution
from pipelines.config import Settings
from pipelines.scoring.model_log import record_model_outputs
from pipelines.sqlrun import ensure_bookkeeping_tables

log = logging.getLogger(__name__)

# Calendar period of the 'periods' resolution: one UTC day. Weekly periods would merge
# every order of a week into one purchase (see sql/models/clv_summary.sql).
PERIOD_DAYS = 1


@dataclass
class ValueReport:
    """What the value step did, for the run summary."""

    resolution: str
    customers: int
    repeat_buyers: int
    clv_status: str  # fitted | skipped | failed
    clv_message: str | None
    parameters: pl.DataFrame = field(default_factory=pl.DataFrame)
    metrics: pl.DataFrame = field(default_factory=pl.DataFrame)
    segment_counts: dict[str, int] = field(default_factory=dict)
    tier_counts: dict[str, int] = field(default_factory=dict)
    # the published customer-base model (bgnbd | mbgnbd | pareto_nbd) and why it was chosen
    clv_model: str = "bgnbd"
    clv_choice: str | None = None
    # the chosen model fitted on the calibration period and models.clv_holdout, for the
    # holdout check; None when no holdout was possible
    holdout_model: object = None
    holdout: pl.DataFrame | None = None
    # every candidate's holdout metrics, recorded with the chosen model's fit metrics (a
    # second record_model_outputs for the same model would replace them)
    holdout_metrics: pl.DataFrame | None = None


def score_customer_value(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date, run_id: str
) -> ValueReport:
    """Build every customer-value table for ``as_of``; never raises for a model that does
    not fit (the run continues without CLV and says why)."""
    m = settings.models
    ensure_bookkeeping_tables(con)
    # per bucket on Dask workers with [execution] runner = "dask", else run_sql here
    execution.run_customer_sql(con, settings, run_id, "models/rfm", {"as_of": as_of})
    scored = rfm.score_rfm(
        con.sql(
            "select customer_id, recency_days, frequency, monetary_value "
            "from models.rfm order by customer_id"
        ).pl(),
        grid=settings.rules.rfm_grid,
    )
    con.register(
        "_scores", scored.select("customer_id", "r_score", "f_score", "m_score", "rfm_segment")
    )
    con.execute("create or replace table models.rfm_scores as select * from _scores")
    con.unregister("_scores")

    resolution = _summary_resolution(con, as_of, m.summary_resolution)
    # only the resolution the models use: the marts and the churn step's BG/NBD read
    # models.clv_summary without knowing it (any_value(resolution) picked either before)
    execution.run_customer_sql(
        con,
        settings,
        run_id,
        "models/clv_summary",
        {
            "as_of": as_of,
            "unit_days": m.unit_days,
            "period_days": PERIOD_DAYS,
            "resolution": resolution,
        },
    )
    summary = con.sql(
        "select * from models.clv_summary where resolution = $r order by customer_id",
        params={"r": resolution},
    ).pl()
    report = ValueReport(
        resolution=resolution,
        customers=summary.height,
        repeat_buyers=int((summary["frequency"] > 0).sum()) if summary.height else 0,
        clv_status="skipped",
        clv_message=None,
    )
    predictions = _fit_and_predict(con, settings, summary, as_of, run_id, report)
    if report.clv_status == "fitted":
        _holdout_check(con, settings, as_of, run_id, resolution, report)
    # after the holdout check: its next-order verdict decides which values are published
    _write_predictions(con, settings, predictions, summary, as_of, run_id)
    report.metrics = con.sql(
        "select model, metric, value, baseline from models.model_metrics where run_id = $r",
        params={"r": run_id},
    ).pl()
    report.segment_counts = dict(
        con.execute(
            "select rfm_segment, count(*) from models.rfm_scores group by all order by 2 desc"
        ).fetchall()
    )
    return report


def _summary_resolution(con, as_of: date, requested: str) -> str:
    """clv.choose_resolution for the completed orders up to ``as_of``; the time of day is
    looked at (counted per distinct time of day in SQL) only when ``requested`` is 'auto'."""
    if requested != "auto":
        return clv.choose_resolution(False, requested=requested)
    counts = con.sql(
        """
        select count(*) as count from core.transactions
        where is_completed_order and order_date <= $as_of and order_at is not null
        group by order_at::time""",
        params={"as_of": as_of},
    ).pl()["count"]
    return clv.choose_resolution(clv.detect_time_of_day(time_counts=counts), requested=requested)


def _penalizer_ladder(settings: Settings) -> tuple[float, ...]:
    first = settings.models.penalizer
    return (first,) + tuple(p for p in clv.DEFAULT_PENALIZERS if p > first)


def _too_little_data(summary: pl.DataFrame, settings: Settings) -> str | None:
    """Why ``summary`` is too little for the customer-base models under the configured
    minimums (clv.check_enough_data), or None."""
    m = settings.models
    return clv.check_enough_data(
        summary,
        unit_days=m.unit_days,
        min_customers=m.min_customers,
        min_repeat_buyers=m.min_repeat_buyers,
        min_history_days=m.min_history_days,
    )


def _calibration_summary(holdout: pl.DataFrame) -> pl.DataFrame:
    """The summary columns the models read, as of the calibration end, from
    ``models.clv_holdout`` rows (frequency, recency, T in model units)."""
    return holdout.select(
        "customer_id",
        pl.col("frequency_cal").alias("frequency"),
        pl.col("recency_cal").alias("recency"),
        pl.col("T_cal").alias("T"),
        pl.col("last_purchase_at_cal").alias("last_purchase_at"),
    )


def _fit_and_predict(
    con, settings: Settings, summary: pl.DataFrame, as_of: date, run_id: str, report: ValueReport
) -> pl.DataFrame | None:
    m = settings.models
    reason = _too_little_data(summary, settings)
    if reason is not None:
        report.clv_message = f"CLV skipped: {reason}"
        record_model_outputs(
            con, run_id, runs=[("bgnbd", "skipped", reason), ("gamma_gamma", "skipped", reason)]
        )
        log.warning(report.clv_message)
        return None
    ladder = _penalizer_ladder(settings)
    ranking = _choose_candidate(con, settings, summary, as_of, run_id, report)
    bgnbd, failures = None, []
    for name in ranking:
        try:
            bgnbd = clv.CANDIDATE_BY_NAME[name](unit_days=m.unit_days, penalizers=ladder).fit(
                summary
            )
            break
        except clv.ModelFitError as exc:
            failures.append((name, "failed", str(exc)))
    if bgnbd is None:
        report.clv_status, report.clv_message = "failed", f"CLV skipped: {failures[-1][2]}"
        record_model_outputs(
            con,
            run_id,
            metrics=report.holdout_metrics,
            runs=failures + [("gamma_gamma", "skipped", "every customer-base model failed")],
        )
        log.warning(report.clv_message)
        return None
    if bgnbd.name != ranking[0]:
        report.clv_choice = (
            f"{bgnbd.label} published: {clv.CANDIDATE_BY_NAME[ranking[0]].label} failed on "
            f"the whole history ({report.clv_choice})"
        )
        report.holdout_model = None
    report.clv_model = bgnbd.name
    not_chosen = [
        (c.name, "skipped", f"not chosen: {report.clv_choice}")
        for c in clv.CANDIDATES
        if c.name != bgnbd.name and c.name not in {f[0] for f in failures}
    ]
    gamma_gamma, gg_message = None, None
    try:
        gamma_gamma = clv.GammaGammaModel(penalizers=ladder).fit(summary)
    except clv.ModelFitError as exc:
        gg_message = str(exc)
    parameters = pl.concat(
        [bgnbd.parameters_frame()] + ([gamma_gamma.parameters_frame()] if gamma_gamma else [])
    )
    metrics = pl.concat(
        [bgnbd.metrics_frame()]
        + ([gamma_gamma.metrics_frame()] if gamma_gamma else [])
        + ([report.holdout_metrics] if report.holdout_metrics is not None else [])
    )
    record_model_outputs(
        con,
        run_id,
        parameters=parameters,
        metrics=metrics,
        runs=failures
        + not_chosen
        + [
            (bgnbd.name, "fitted", f"penalizer {bgnbd.penalizer_}; {report.clv_choice}"),
            (
                "gamma_gamma",
                "fitted" if gamma_gamma else "failed",
                f"penalizer {gamma_gamma.penalizer_}" if gamma_gamma else gg_message,
            ),
        ],
    )
    report.clv_status = "fitted"
    report.clv_message = (
        None if gamma_gamma else f"Spend model failed, CLV left empty: {gg_message}"
    )
    report.parameters = parameters
    predictions = clv.predict_customer_value(
        summary,
        bgnbd=bgnbd,
        gamma_gamma=gamma_gamma,
        as_of=as_of,
        horizons_days=m.expected_purchase_horizons_days,
        order_probability_horizons_days=m.order_probability_horizons_days,
        clv_horizon_days=m.clv_horizon_days,
        annual_discount_rate=m.annual_discount_rate,
    )
    # predicted_clv_low / _high (models/clv/uncertainty.py): the parameter draws once, here;
    # each customer's interval from them, per customer bucket on the Dask runner
    plan = None
    if gamma_gamma is not None:
        plan = plan_clv_interval(
            summary,
            purchases=bgnbd,
            spend=gamma_gamma,
            clv_horizon_days=m.clv_horizon_days,
            annual_discount_rate=m.annual_discount_rate,
        )
    interval = None
    if plan is not None and execution.on_dask(settings):
        results = execution.map_buckets(
            settings,
            run_id,
            "models/clv_interval",
            fn=clv_interval_bucket,
            kwargs={"plan": plan, "resolution": report.resolution},
            inputs=("models.clv_summary",),
        )
        interval = execution.pool_frame(results)
    elif plan is not None:
        interval = interval_for_customers(plan, summary)
    return add_clv_interval(predictions, interval)


def clv_interval_bucket(
    con: duckdb.DuckDBPyConnection, plan: IntervalPlan, resolution: str
) -> pl.DataFrame:
    """On a Dask worker: the CLV interval of one bucket's customers (its
    ``models.clv_summary`` rows at ``resolution``) under the run's ``plan``."""
    summary = con.sql(
        "select * from models.clv_summary where resolution = $r order by customer_id",
        params={"r": resolution},
    ).pl()
    return interval_for_customers(plan, summary)


def _write_predictions(
    con,
    settings: Settings,
    predictions: pl.DataFrame | None,
    summary: pl.DataFrame,
    as_of: date,
    run_id: str,
) -> None:
    """models.clv_predictions; the next-order quantities that did not beat their naive rule on
    this run's holdout (the ``next_order_verdict`` rows in models.model_metrics) hold the naive
    rule's values instead of the model's."""
    m = settings.models
    if predictions is None:
        cols = ", ".join(
            [f"null::double as expected_purchases_{h}d" for h in m.expected_purchase_horizons_days]
            + [
                f"null::double as {clv.order_probability_column(h)}"
                for h in m.order_probability_horizons_days
            ]
        )
        con.execute(f"""create or replace table models.clv_predictions as
            select customer_id, null::double as p_alive, {cols},
                   null::double as expected_order_value, null::double as predicted_clv,
                   null::double as predicted_clv_low, null::double as predicted_clv_high,
                   null::date as expected_next_order_date
            from models.rfm""")
        return
    metrics = con.sql(
        "select model, metric, value from models.model_metrics where run_id = $r",
        params={"r": run_id},
    ).pl()
    predictions = _publish_naive_where_model_loses(
        predictions, summary, clv.published_sources(metrics), as_of, m.unit_days
    )
    con.register("_pred", predictions)
    con.execute("create or replace table models.clv_predictions as select * from _pred")
    con.unregister("_pred")


def _publish_naive_where_model_loses(
    predictions: pl.DataFrame,
    summary: pl.DataFrame,
    sources: dict[str, str | None],
    as_of: date,
    unit_days: int,
) -> pl.DataFrame:
    """Replace each next-order column whose source is a naive rule by that rule's values at
    ``as_of``: a probability by :func:`clv.naive_order_probabilities`' rule, the date by
    last order + average gap (:func:`clv.predict_naive_next_order_dates`)."""
    replacements = []
    for column, source in sources.items():
        if source in (None, "model") or column not in predictions.columns:
            continue
        if column == clv.DATE_QUANTITY:
            naive = clv.predict_naive_next_order_dates(summary, as_of=as_of, unit_days=unit_days)
            replacements.append(naive.get_column("naive_next_order_date").alias(column))
        else:
            horizon = int(column.removeprefix("p_order_next_").removesuffix("d"))
            rules = clv.naive_order_probabilities(
                summary, horizon_days=horizon, unit_days=unit_days
            )
            replacements.append(pl.Series(column, rules[source]))
    # the summary and the predictions are one row per customer in the same order
    if replacements and predictions["customer_id"].equals(summary["customer_id"]):
        return predictions.with_columns(replacements)
    if replacements:
        raise ValueError("predictions and summary are not in the same customer order")
    return predictions


def _choose_candidate(
    con, settings: Settings, summary: pl.DataFrame, as_of: date, run_id: str, report: ValueReport
) -> list[str]:
    """Fit every candidate (BG/NBD, MBG/NBD, Pareto/NBD) on the period before the holdout
    window, score each on the window (sql/models/clv_holdout.sql) and rank them:
    :func:`models.clv.choose_model` first, then the rest by holdout MAE. Each candidate's
    holdout metrics go to models.model_metrics and its calibration fit (or why it failed or
    was rejected) to models.model_runs as ``<name>_holdout``. Without a usable holdout (too
    little history before the window, or no candidate fits there) the ranking is BG/NBD
    alone and ``report.clv_choice`` says why. Sets report.clv_choice, report.holdout_model
    (the chosen model fitted on the calibration period) and report.holdout."""
    m = settings.models
    calibration_end = as_of - timedelta(days=m.holdout_days)
    execution.run_customer_sql(
        con,
        settings,
        run_id,
        "models/clv_holdout",
        {
            "calibration_end": calibration_end,
            "as_of": as_of,
            "unit_days": m.unit_days,
            "period_days": PERIOD_DAYS,
            "resolution": report.resolution,
        },
    )
    holdout = con.sql(
        "select * from models.clv_holdout where resolution = $r order by customer_id",
        params={"r": report.resolution},
    ).pl()
    report.holdout = holdout
    calibration = _calibration_summary(holdout)
    short = _too_little_data(calibration, settings)
    if short is not None:
        report.clv_choice = f"BG/NBD kept: no holdout before {calibration_end} ({short})"
        record_model_outputs(con, run_id, runs=[("bgnbd_holdout", "skipped", short)])
        return ["bgnbd"]
    fitted, maes, runs, metrics = {}, {}, [], []
    for candidate in clv.CANDIDATES:
        try:
            model = candidate(unit_days=m.unit_days, penalizers=_penalizer_ladder(settings)).fit(
                calibration
            )
        except clv.ModelFitError as exc:
            runs.append((f"{candidate.name}_holdout", "failed", str(exc)))
            continue
        frame = clv.evaluate_holdout(holdout, model=model, refit=False)
        metrics.append(frame)
        fitted[candidate.name] = model
        maes[candidate.name] = frame.filter(pl.col("metric") == "holdout_mae_repeat_purchases")[
            "value"
        ].item()
        runs.append((f"{candidate.name}_holdout", "fitted", f"calibration ends {calibration_end}"))
    report.holdout_metrics = pl.concat(metrics) if metrics else None
    record_model_outputs(con, run_id, runs=runs)
    if not fitted:
        report.clv_choice = (
            f"BG/NBD kept: no candidate could be fitted before {calibration_end} ({runs[0][2]})"
        )
        return ["bgnbd"]
    chosen, report.clv_choice = clv.choose_model(maes)
    report.holdout_model = fitted[chosen]
    rest = sorted((n for n in maes if n != chosen), key=lambda n: maes[n])
    return [chosen] + rest


def _holdout_check(
    con, settings: Settings, as_of: date, run_id: str, resolution: str, report: ValueReport
) -> None:
    """The holdout verdict of the chosen model against the naive rate (model clv_verdict)
    and the expected next order date against 'last order + average gap', from the chosen
    model fitted on the calibration period by :func:`_choose_candidate` (one fit and one
    pass over the transactions, sql/models/clv_holdout.sql, serve the choice and both
    checks). Nothing when no holdout was possible."""
    model, holdout = report.holdout_model, report.holdout
    if model is None or holdout is None:
        return
    calibration_end = as_of - timedelta(days=settings.models.holdout_days)
    metrics = pl.concat(
        [
            clv.holdout_verdict(holdout, model),
            _next_order_backtest(con, settings, calibration_end, as_of, holdout, model),
        ]
    )
    record_model_outputs(con, run_id, metrics=metrics)


def _next_order_backtest(
    con,
    settings: Settings,
    calibration_end: date,
    as_of: date,
    holdout: pl.DataFrame,
    model: clv.BetaGeoModel,
) -> pl.DataFrame:
    """Score the next-order predictions of ``model`` (fitted at the calibration end) against
    what customers did in the holdout window: P(order within h days) by Brier score against
    the naive rules, the expected next order date by MAE in days and Harrell's C against
    "last order + average gap", and the verdict rows (clv.score_next_order). The last order
    before and the first order in the window come with ``holdout``."""
    m = settings.models
    summary = _calibration_summary(holdout)
    offsets = clv.predict_next_order_offsets(model, summary)
    naive = clv.predict_naive_next_order_dates(
        summary, as_of=calibration_end, unit_days=m.unit_days
    )

    def days_after_cutoff(frame: pl.DataFrame, column: str) -> np.ndarray:
        days = (pl.col(column) - pl.lit(calibration_end)).dt.total_days().cast(pl.Float64)
        return frame.select(days.fill_null(float("nan"))).to_series().to_numpy()

    naive_offsets = days_after_cutoff(naive, "naive_next_order_date")
    next_days = days_after_cutoff(holdout, "first_holdout_order_date")
    horizons = m.order_probability_horizons_days
    scores = clv.score_next_order(
        clv.predict_order_probabilities(model, summary, horizons),
        {
            h: clv.naive_order_probabilities(summary, horizon_days=h, unit_days=m.unit_days)
            for h in horizons
        },
        offsets,
        naive_offsets,
        next_days,
        window_days=(as_of - calibration_end).days,
    )
    dates = (
        pl.DataFrame({"customer_id": summary["customer_id"], "offset": offsets})
        .select(
            "customer_id",
            (
                pl.lit(calibration_end)
                + pl.duration(days=pl.col("offset").fill_nan(None).cast(pl.Int64))
            )
            .cast(pl.Date)
            .alias("expected_next_order_date"),
        )
        .join(naive, on="customer_id", how="left")
    )
    actual = holdout.select(
        "customer_id", pl.col("first_holdout_order_date").alias("next_order_date")
    )
    return pl.concat([clv.score_next_order_dates(dates, actual), scores])


def make_bgnbd_scorer(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: date,
    resolution: str,
    model_name: str = "bgnbd",
):
    """A ``cutoff -> frame`` function for the churn step: p_alive, expected purchases and
    P(no purchase) over the churn horizon from the customer-base model ``model_name``
    (``ValueReport.clv_model``, the one the value step chose: bgnbd, mbgnbd or pareto_nbd)
    fitted on data up to ``cutoff`` only.

    ``resolution`` is the summary resolution the value step fitted (``ValueReport``). At
    ``as_of`` the scorer reads the summary the value step stored; at earlier cutoffs it
    reads the same summary through the ``clv_summary_at`` table macro, which stores
    nothing. A cutoff where the fit fails gives an empty frame (the churn model then works
    without BG/NBD inputs there).
    """
    m = settings.models
    horizon = m.churn_horizon_days
    candidate = clv.CANDIDATE_BY_NAME[model_name]
    schema = {
        "customer_id": pl.String,
        "p_alive": pl.Float64,
        "expected_purchases": pl.Float64,
        "p_no_purchase": pl.Float64,
    }

    def score(cutoff: date) -> pl.DataFrame:
        if cutoff == as_of:
            summary = con.sql(
                "select * from models.clv_summary where resolution = $r order by customer_id",
                params={"r": resolution},
            ).pl()
        else:
            summary = con.sql(
                "select * from clv_summary_at($cutoff, $unit_days, $period_days, $r) "
                "order by customer_id",
                params={
                    "cutoff": cutoff,
                    "unit_days": m.unit_days,
                    "period_days": PERIOD_DAYS,
                    "r": resolution,
                },
            ).pl()
        if summary.height == 0:
            return pl.DataFrame(schema=schema)
        try:
            model = candidate(unit_days=m.unit_days, penalizers=_penalizer_ladder(settings)).fit(
                summary
            )
        except clv.ModelFitError as exc:
            log.warning("%s at churn cutoff %s failed: %s", candidate.label, cutoff, exc)
            return pl.DataFrame(schema=schema)
        return pl.DataFrame(
            {
                "customer_id": summary["customer_id"],
                "p_alive": model.predict_p_alive(summary),
                "expected_purchases": model.predict(summary, horizon_days=horizon),
                "p_no_purchase": model.predict_p_no_purchase(summary, horizon_days=horizon),
            },
            schema=schema,
        )

    return score
