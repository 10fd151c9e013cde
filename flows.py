"""Prefect flows: a table of contents of the pipeline. Each task is one step that calls a
plain function from ``pipelines/`` or ``models/``; the how lives there."""

from __future__ import annotations

from datetime import date, datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import (churn, clean, core, erasure, exports, ingest, marts, publish, quality,
                       report, runlog, summary, value)
from pipelines.config import load_settings
from pipelines.warehouse import connect_warehouse

# Steps share one open DuckDB connection, which cannot be hashed for caching.
step = task(cache_policy=NO_CACHE)


@step(name="ingest", retries=2, retry_delay_seconds=5)
def ingest_exports(ctx: runlog.RunContext) -> list[ingest.FileReport]:
    reports = []
    for source in ctx.settings.sources.values():
        reports += ingest.ingest_source(ctx.con, source, ctx.run_id, ctx.started_at)
    # forgotten customers (crm forget) must not come back with a re-sent export
    erased = erasure.apply_tombstones(ctx.con, ctx.run_id)
    ctx.rows_per_step["ingest"] = {r.path.rsplit("/", 1)[-1]: r.rows_read for r in reports}
    ctx.rows_per_step["erased"] = erased.input_rows_erased
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


@step(name="customer value")
def score_customer_value(ctx: runlog.RunContext) -> value.ValueReport:
    report = value.score_customer_value(ctx.con, ctx.settings, ctx.as_of, ctx.run_id)
    ctx.rows_per_step["value"] = {"customers": report.customers, "clv": report.clv_status}
    get_run_logger().info("value: %d buyers, CLV %s%s", report.customers, report.clv_status,
                          f" ({report.clv_message})" if report.clv_message else "")
    return report


@step(name="churn")
def score_churn(ctx: runlog.RunContext) -> churn.ChurnResult:
    result = churn.score_churn_risk(ctx.con, ctx.settings, ctx.as_of, ctx.run_id,
                                    value.make_bgnbd_scorer(ctx.con, ctx.settings, ctx.as_of))
    ctx.rows_per_step["churn"] = {"scored": result.scores.height,
                                  "published": result.published_scorer}
    get_run_logger().info("churn: %d customers scored; %s", result.scores.height,
                          result.message)
    return result


@step(name="segments")
def segment_customers(ctx: runlog.RunContext) -> dict:
    counts = value.segment_customers(ctx.con, ctx.settings, ctx.as_of)
    ctx.rows_per_step["segments"] = counts["value_tier"]
    get_run_logger().info("tiers: %s", counts["value_tier"])
    return counts


@step(name="marts")
def build_marts(ctx: runlog.RunContext) -> dict[str, int]:
    rows = marts.build_marts(ctx.con, ctx.as_of, ctx.run_id)
    ctx.rows_per_step["marts"] = rows
    get_run_logger().info("marts rows: %s", rows)
    return rows


@step(name="publish", retries=2, retry_delay_seconds=5)
def publish_outputs(ctx: runlog.RunContext) -> dict:
    """Last step, after every other succeeded: exports, serving database, report. Each is
    swapped into place atomically, so a failure before here publishes nothing."""
    export_report = exports.write_exports(ctx.con, ctx.settings, ctx.as_of, ctx.run_id)
    serving = publish.publish_serving_database(ctx.con, ctx.settings, ctx.run_id)
    report_file = report.write_report(ctx.con, publish.report_path(ctx.settings, ctx.as_of),
                                      run_id=ctx.run_id, as_of=ctx.as_of,
                                      currency=ctx.settings.currency.base)
    published = {"exports": str(export_report.directory), "serving": str(serving),
                 "report": str(report_file)}
    ctx.rows_per_step["publish"] = dict(export_report.rows_by_list)
    get_run_logger().info("published: %s", published)
    return published


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
        value_report = score_customer_value(ctx)
        churn_result = score_churn(ctx)
        segment_counts = segment_customers(ctx)
        build_marts(ctx)
        published = publish_outputs(ctx)
        text = "\n\n".join([
            summary.format_summary(ctx.con, ctx.run_id, ctx.as_of),
            summary.format_value_summary(value_report, segment_counts),
            summary.format_churn_summary(churn_result),
            "Published:\n" + "\n".join(f"  {k:<8} {v}" for k, v in published.items())
            + summary.format_exports_note(ctx.con)])
        create_markdown_artifact(key="crm-run-summary", markdown=f"```\n{text}\n```",
                                 description=f"CRM run {ctx.run_id}, as of {ctx.as_of}")
        runlog.record_run_end(ctx, "succeeded")
        return text
    except Exception as exc:
        runlog.record_run_end(ctx, "failed", str(exc))
        raise
    finally:
        ctx.con.close()


def build_deployment(config_path: str | None):
    """The scheduled deployment of :func:`crm_pipeline` for ``crm serve``: the cron and
    time zone of the config's ``[schedule]`` table, the config path as parameter."""
    from prefect.schedules import Cron

    from pipelines.errors import ConfigError

    settings = load_settings(config_path)
    schedule = settings.schedule
    if not schedule.cron:
        raise ConfigError("[schedule].cron is missing: crm serve needs a cron expression, "
                          "e.g. [schedule] cron = \"0 6 * * *\" and timezone = \"Europe/Berlin\".")
    return crm_pipeline.to_deployment(
        name=schedule.deployment_name,
        schedule=Cron(schedule.cron, timezone=schedule.timezone),
        parameters={"config_path": str(settings.config_path)},
        description="CRM analytics pipeline on the config's schedule")
