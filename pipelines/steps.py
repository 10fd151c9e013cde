"""The run's steps, in run order: the one list that the Prefect flow, the tests and the
benchmark all use.

Each step is a plain function ``step(ctx) -> StepReport``: it does its work on the open
warehouse, and reports what it produced (``result``), the counts that go to
``audit.runs.rows_per_step`` (``rows``) and one log line (``message``). What a step
decides for the steps after it (the core step the as-of date, the value step the CLV
summary's resolution) it returns in ``decided``; :class:`Run` carries that into their
context, so no step changes the context it was given, and none reads back a decision
from another step's table.

``flows.py`` wraps every entry of :data:`STEPS` in a Prefect task; :func:`run_steps`
runs them without Prefect (tests, the kill harness, the benchmark). Both go through
:class:`Run`, which logs the run in ``audit.runs`` from start to end.

The step modules are imported inside the steps: Great Expectations, lifetimes and
scikit-learn take 10+ s to import, which a process that runs only the last steps (the
kill harness's children, ``crm status``) never needs.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from pipelines import execution, runlog, warehouse
from pipelines.config import Settings, load_settings
from pipelines.publish import journal


@dataclass(frozen=True)
class RunContext:
    """What every step of one run reads: settings, the open warehouse, the run id, when
    the run started (the ingestion time of its files), the as-of date (None until the
    core step has derived it, unless requested) and the resolution of the CLV summary the
    value step fitted (None before it)."""

    settings: Settings
    con: duckdb.DuckDBPyConnection
    run_id: str
    started_at: datetime
    requested_as_of: date | None = None
    as_of: date | None = None
    clv_resolution: str | None = None
    clv_model: str | None = None  # the published customer-base model (value step)
    write_report: bool = True
    full_refresh: bool = False


@dataclass(frozen=True)
class StepReport:
    """What one step did: ``result`` its own report object, ``rows`` its entries in
    ``audit.runs.rows_per_step`` (key -> counts), ``message`` one line for the log,
    ``decided`` the :class:`RunContext` fields it set for the steps after it."""

    name: str
    result: Any
    rows: dict[str, Any]
    message: str
    decided: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None


def ingest(ctx: RunContext) -> StepReport:
    """Load new export files into ``raw.*``; re-apply the erasure tombstones."""
    from pipelines import erasure
    from pipelines.load import ingest as ingest_files

    reports = []
    ring = erasure.key_ring(ctx.settings)
    for source in ctx.settings.sources.values():
        reports += ingest_files.ingest_source(
            ctx.con, source, ctx.run_id, ctx.started_at, ring=ring
        )
    # Forgotten customers (crm forget) must not come back with a re-sent export: ingest
    # left their rows out; this catches a customer record under a new id with a forgotten
    # e-mail or phone (counted, kept) and rows loaded before ingest filtered.
    erasure.apply_tombstones(ctx.con, ctx.run_id, ring=ring)
    [(erased,)] = ctx.con.execute(
        "select coalesce(sum(rows), 0)::bigint from audit.erased_rows where run_id = ?",
        [ctx.run_id],
    ).fetchall()
    rows = {r.path.rsplit("/", 1)[-1]: r.rows_read for r in reports}
    return StepReport(
        "ingest",
        reports,
        {"ingest": rows, "erased": erased},
        f"ingest: {len(reports)} files, {sum(r.rows_read for r in reports)} rows read",
    )


def clean(ctx: RunContext) -> StepReport:
    """Type and normalise the rows of files not processed yet (all with a full refresh)
    from ``raw.*`` into ``staging.*``; stop while a rejected file is still delivered."""
    from pipelines.load import clean as staging

    report = staging.build_staging(
        ctx.con, ctx.settings, full_refresh=ctx.full_refresh, run_id=ctx.run_id
    )
    files = {
        name: {"processed": len(f.pending), "reused": f.reused, "changed": len(f.changed)}
        for name, f in report.files.items()
    }
    return StepReport(
        "clean",
        report,
        {"staging": report.rows, "files": files},
        f"staging rows: {report.rows}; files processed/reused: "
        + ", ".join(f"{k} {v['processed']}/{v['reused']}" for k, v in files.items()),
    )


def validate(ctx: RunContext) -> StepReport:
    """Run the Great Expectations suites over the rows staged this run; quarantine failing
    rows; stop on bad batches (and reject the file)."""
    from pipelines.load import quality

    reports = quality.validate_pending(
        ctx.con, ctx.settings, ctx.run_id, full_refresh=ctx.full_refresh
    )
    quarantined = {r.source: r.rows_quarantined for r in reports}
    checked = {r.source: r.rows_checked for r in reports}
    return StepReport(
        "validate",
        reports,
        {"quarantine": quarantined, "validated_rows": checked},
        f"validate: {checked} rows checked, {quarantined} quarantined",
    )


def core(ctx: RunContext) -> StepReport:
    """Deduplicate and resolve identities into ``core.*``; decide the as-of date; check
    each source's freshness on it."""
    from pipelines.core import build as core_tables
    from pipelines.load import freshness

    report = core_tables.build_core(ctx.con, ctx.run_id)
    as_of = runlog.resolve_as_of(ctx.con, ctx.requested_as_of)
    # a stale source stops the run here, before any model or output uses its rows
    fresh = freshness.check_freshness(ctx.con, ctx.settings, as_of, ctx.run_id)
    # [execution] runner = "dask": the per-customer stages read these bucket files
    execution.write_core_buckets(ctx.con, ctx.settings, ctx.run_id)
    return StepReport(
        "core",
        report,
        {"core": {"orders": report.orders, "customers": report.customers, "events": report.events}}
        | {"freshness": {f.source: f.status for f in fresh}},
        f"core: {report.orders} orders, {report.customers} customers, "
        f"{report.events} events; as of {as_of}",
        decided={"as_of": as_of},
    )


def customer_value(ctx: RunContext) -> StepReport:
    """RFM scores and the BG/NBD + Gamma-Gamma customer value."""
    from pipelines.scoring import value

    report = value.score_customer_value(ctx.con, ctx.settings, ctx.as_of, ctx.run_id)
    note = f" ({report.clv_message})" if report.clv_message else ""
    return StepReport(
        "customer value",
        report,
        {"value": {"customers": report.customers, "clv": report.clv_status}},
        f"value: {report.customers} buyers, CLV {report.clv_status}{note}",
        decided={"clv_resolution": report.resolution, "clv_model": report.clv_model},
    )


def churn(ctx: RunContext) -> StepReport:
    """Churn-risk scores (the trained model, or the best baseline)."""
    from pipelines.scoring import churn as churn_risk
    from pipelines.scoring import value

    result = churn_risk.score_churn_risk(
        ctx.con,
        ctx.settings,
        ctx.as_of,
        ctx.run_id,
        value.make_bgnbd_scorer(
            ctx.con, ctx.settings, ctx.as_of, ctx.clv_resolution, ctx.clv_model or "bgnbd"
        ),
        full_refresh=ctx.full_refresh,
        bgnbd_settings=f"{ctx.clv_resolution} {ctx.clv_model or 'bgnbd'}",
    )
    return StepReport(
        "churn",
        result,
        {
            "churn": {
                "scored": result.scores.height,
                "published": result.published_scorer,
                "trained_as_of": str(result.training_date),
                "reused_saved_scorer": result.reused,
            }
        },
        f"churn: {result.scores.height} customers scored; {result.message}",
    )


def segments(ctx: RunContext) -> StepReport:
    """Value tiers, lifecycle stages and recommended actions."""
    from pipelines.scoring import segments as customer_segments

    counts = customer_segments.build_customer_segments(ctx.con, ctx.settings, ctx.as_of)
    return StepReport(
        "segments", counts, {"segments": counts["value_tier"]}, f"tiers: {counts['value_tier']}"
    )


def build_marts(ctx: RunContext) -> StepReport:
    """The published ``marts.*`` tables, checked against their contracts."""
    from pipelines import marts

    rows = marts.build_marts(ctx.con, ctx.as_of, ctx.run_id, ctx.clv_resolution)
    return StepReport("marts", rows, {"marts": rows}, f"marts rows: {rows}")


def publish_outputs(ctx: RunContext) -> StepReport:
    """Last, after every other step succeeded: exports (and ``exports/latest``), serving
    database, report, published as one unit (:mod:`pipelines.publish.journal`): each is
    written completely beside its destination first; only then are they swapped in
    together and the run recorded in ``audit.publications``. A failure while writing
    publishes nothing, and says so."""
    from pipelines.files import make_dirs
    from pipelines.publish import exports, journal
    from pipelines.publish import serving as publish

    staged: list[journal.StagedOutput] = []
    settings, what = ctx.settings, "export lists"
    try:
        export_dir = exports.stage_exports(ctx.con, settings, ctx.as_of, ctx.run_id)
        staged.append(
            journal.StagedOutput(
                "exports", str(export_dir.directory), str(export_dir.report.directory)
            )
        )
        what = "serving database"
        serving = publish.stage_serving_database(ctx.con, settings, ctx.run_id)
        staged.append(
            journal.StagedOutput("serving", str(serving), str(settings.warehouse.serving_path))
        )
        if ctx.write_report:
            from pipelines.publish import (
                data_docs,
                report,  # matplotlib: 3 s of imports a killed child never needs
            )

            final = report.report_path(settings, ctx.as_of)
            what = "Data Docs"
            make_dirs(final.parent, settings.permissions.dir_mode, settings.permissions.group)
            site = final.parent / data_docs.DATA_DOCS_DIR
            staged_site = data_docs.staged_site_dir(site, ctx.run_id)
            index = data_docs.write_data_docs(ctx.con, settings, ctx.run_id, staged_site)
            if index is not None:
                staged.append(journal.StagedOutput("data_docs", str(staged_site), str(site)))
            what = "report"
            staged_report = report.stage_report(
                ctx.con,
                final,
                run_id=ctx.run_id,
                as_of=ctx.as_of,
                currency=settings.currency.base,
                dir_mode=settings.permissions.dir_mode,
                group=settings.permissions.group,
                data_docs=f"{data_docs.DATA_DOCS_DIR}/index.html" if index else None,
            )
            staged.append(journal.StagedOutput("report", str(staged_report), str(final)))
        staged.append(
            journal.StagedOutput(
                "latest", ctx.as_of.isoformat(), str(settings.exports.path / exports.LATEST_NAME)
            )
        )
    except Exception as exc:
        journal.discard_staged(staged)
        previous = journal.last_published_run(ctx.con)
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0] or type(exc).__name__
        raise journal.PublishError(
            f"Nothing was published by run {ctx.run_id}: writing its {what} failed "
            f"({reason}). The exports, serving database and report stay those of "
            + (f"run {previous}." if previous else "the last published run (none yet).")
            + " Free the space or fix the cause and run again."
        ) from exc
    except BaseException:
        journal.discard_staged(staged)
        raise
    published = journal.publish_staged(ctx.con, settings, ctx.run_id, ctx.as_of, staged)
    return StepReport(
        "publish",
        published,
        {"publish": dict(export_dir.report.rows_by_list)},
        f"published run {ctx.run_id}: {', '.join(published.values())}",
    )


def _timed(step: Callable[[RunContext], StepReport]) -> Callable[[RunContext], StepReport]:
    """``step``, with its wall seconds in its report (``audit.runs.step_seconds``)."""

    @functools.wraps(step)
    def timed(ctx: RunContext) -> StepReport:
        started = time.perf_counter()
        report = step(ctx)
        return dataclasses.replace(report, seconds=round(time.perf_counter() - started, 3))

    return timed


# The run order; the keys are the Prefect tasks' names.
STEPS: dict[str, Callable[[RunContext], StepReport]] = {
    name: _timed(step)
    for name, step in {
        "ingest": ingest,
        "clean": clean,
        "validate": validate,
        "core": core,
        "customer value": customer_value,
        "churn": churn,
        "segments": segments,
        "marts": build_marts,
        "publish": publish_outputs,
    }.items()
}


@dataclass
class Run:
    """One run in progress: its context and the reports of the steps done so far."""

    ctx: RunContext
    reports: dict[str, StepReport] = field(default_factory=dict)

    def record(self, report: StepReport) -> StepReport:
        """Keep a step's report; what it decided holds for the steps after it."""
        self.reports[report.name] = report
        if report.decided:
            self.ctx = dataclasses.replace(self.ctx, **report.decided)
        return report

    @property
    def rows_per_step(self) -> dict[str, Any]:
        """What ``audit.runs.rows_per_step`` records: every step's ``rows``, in run order."""
        return {key: n for report in self.reports.values() for key, n in report.rows.items()}

    @property
    def step_seconds(self) -> dict[str, float | None]:
        """What ``audit.runs.step_seconds`` records: wall seconds per step done."""
        return {name: report.seconds for name, report in self.reports.items()}

    def summary(self) -> str:
        """The end-of-run summary text (what ``crm run`` prints)."""
        from pipelines import summary

        return summary.format_run_summary(
            self.ctx.con,
            self.ctx.run_id,
            self.ctx.as_of,
            {k: r.result for k, r in self.reports.items()},
            self.step_seconds,
        )


@contextmanager
def open_run(
    config_path: str | Path | None,
    as_of: date | None = None,
    *,
    write_report: bool = True,
    full_refresh: bool = False,
) -> Iterator[Run]:
    """Open the warehouse and log a run as running; on leaving, log it as succeeded, or
    as failed with the error, and close the warehouse."""
    settings = load_settings(config_path)
    started = datetime.now(UTC).replace(tzinfo=None)
    run_id = runlog.new_run_id(started)
    from pipelines import erasure

    # an erasure that stopped half done is finished before this run reads anything
    finished = erasure.finish_pending_erasure(settings)
    if finished:
        print(finished)
    con = warehouse.connect_warehouse(settings, "crm run", run_id)
    try:
        # a publish a crash interrupted is completed before this run changes anything
        completed = journal.complete_interrupted_publish(con, settings)
    except BaseException:
        con.close()
        warehouse.release_holder(settings)
        raise
    if completed:
        print(completed)
    ctx = RunContext(
        settings=settings,
        con=con,
        run_id=run_id,
        started_at=started,
        requested_as_of=as_of,
        as_of=as_of,
        write_report=write_report,
        full_refresh=full_refresh,
    )
    run = Run(ctx)
    try:
        runlog.record_run_start(ctx.con, settings, ctx.run_id, started, as_of)
        yield run
        runlog.record_run_end(
            ctx.con,
            ctx.run_id,
            "succeeded",
            run.ctx.as_of,
            run.rows_per_step,
            step_seconds=run.step_seconds,
        )
    except Exception as exc:
        runlog.record_run_end(
            ctx.con,
            ctx.run_id,
            "failed",
            run.ctx.as_of,
            run.rows_per_step,
            str(exc),
            step_seconds=run.step_seconds,
        )
        raise
    finally:
        execution.close_cluster()
        ctx.con.close()
        warehouse.release_holder(settings)


def run_steps(
    config_path: str | Path | None,
    as_of: date | None = None,
    names: Iterable[str] = tuple(STEPS),
    *,
    write_report: bool = True,
    full_refresh: bool = False,
) -> Run:
    """Run the steps ``names`` (default: all, always in run order) without Prefect;
    ``full_refresh`` processes every delivered file again.

    Returns the finished :class:`Run` (its context's connection is closed).
    """
    names = list(names)
    unknown = set(names) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown steps {sorted(unknown)}; known: {list(STEPS)}")
    with open_run(config_path, as_of, write_report=write_report, full_refresh=full_refresh) as run:
        for name, step in STEPS.items():
            if name in names:
                run.record(step(run.ctx))
    return run


def backfill_dates(start: date, end: date, every_days: int = 1) -> list[date]:
    """The as-of dates of ``crm backfill``: ``start``, ``start + every_days``, ... up to
    and including ``end``. Raises ``ValueError`` for an empty or endless range."""
    if every_days < 1:
        raise ValueError(f"--every must be at least 1 day, got {every_days}")
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    days = (end - start).days // every_days + 1
    return [start + timedelta(days=i * every_days) for i in range(days)]


def scheduled_as_of(scheduled_start: datetime, timezone: str) -> date:
    """The as-of date of a scheduled run: the calendar date of its scheduled start in the
    schedule's time zone (a run scheduled for 06:00 Europe/Berlin on 2 March is as of 2
    March, whenever it actually starts)."""
    from zoneinfo import ZoneInfo

    if scheduled_start.tzinfo is None:
        scheduled_start = scheduled_start.replace(tzinfo=UTC)
    return scheduled_start.astimezone(ZoneInfo(timezone)).date()
