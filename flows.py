"""Prefect flows: a table of contents of the pipeline. Each task is one step that calls a
plain function from ``pipelines/`` or ``models/``; the how lives there."""

from __future__ import annotations

from datetime import date, datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipelines import clean, core, ingest, quality, runlog, summary
from pipelines.config import load_settings
from pipelines.warehouse import connect_warehouse

# Steps share one open DuckDB connection, which cannot be hashed for caching.
step = task(cache_policy=NO_CACHE)


@step(name="ingest", retries=2, retry_delay_seconds=5)
def ingest_exports(ctx: runlog.RunContext) -> list[ingest.FileReport]:
    reports = []
    for source in ctx.settings.sources.values():
        reports += ingest.ingest_source(ctx.con, source, ctx.run_id, ctx.started_at)
    ctx.rows_per_step["ingest"] = {r.path.rsplit("/", 1)[-1]: r.rows_read for r in reports}
    get_run_logger().info("ingest: %d files, %d rows read", len(reports),
                          sum(r.rows_read for r in reports))
    return reports


@step(name="clean")
def build_staging(ctx: runlog.RunContext) -> dict[str, int]:
    counts = clean.build_staging(ctx.con, ctx.settings)
    ctx.rows_per_step["staging"] = counts
    get_run_logger().info("staging rows: %s", counts)
    return counts


@step(name="validate")
def validate_sources(ctx: runlog.RunContext) -> list[quality.ValidationReport]:
    reports = [quality.validate_source(ctx.con, name, ctx.settings, ctx.run_id)
               for name in clean.STAGING_ORDER]
    quality.check_batch_limits(ctx.con, ctx.settings, ctx.run_id)
    ctx.rows_per_step["quarantine"] = {r.source: r.rows_quarantined for r in reports}
    get_run_logger().info("validate: %s rows quarantined",
                          {r.source: r.rows_quarantined for r in reports})
    return reports


@step(name="core")
def build_core(ctx: runlog.RunContext) -> core.CoreReport:
    report = core.build_core(ctx.con, ctx.run_id)
    ctx.as_of = runlog.resolve_as_of(ctx.con, ctx.requested_as_of)
    ctx.rows_per_step["core"] = {"orders": report.orders, "customers": report.customers,
                                 "events": report.events}
    get_run_logger().info("core: %d orders, %d customers, %d events; as of %s",
                          report.orders, report.customers, report.events, ctx.as_of)
    return report


@flow(name="crm_pipeline")
def crm_pipeline(config_path: str | None = None, as_of: str | None = None) -> str:
    """Run the whole pipeline once; returns the run summary text."""
    settings = load_settings(config_path)
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    ctx = runlog.RunContext(settings=settings, con=connect_warehouse(settings),
                            run_id=runlog.new_run_id(started), started_at=started,
                            requested_as_of=date.fromisoformat(as_of) if as_of else None)
    runlog.record_run_start(ctx)
    try:
        ingest_exports(ctx)
        build_staging(ctx)
        validate_sources(ctx)
        build_core(ctx)
        text = summary.format_summary(ctx.con, ctx.run_id, ctx.as_of)
        runlog.record_run_end(ctx, "succeeded")
        return text
    except Exception as exc:
        runlog.record_run_end(ctx, "failed", str(exc))
        raise
    finally:
        ctx.con.close()
