"""Prefect flows: a table of contents of the pipeline. Each task is one entry of
``pipelines.steps.STEPS``, a plain function; the how lives there."""

from __future__ import annotations

from datetime import date

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import steps
from pipelines.config import load_settings

# Reading exports touches the file system, where a retry can help (only for a transient
# failure, see retry_if_transient). Publish is never retried: its failures are either
# before any swap (a retry would write everything again for the same cause) or after
# one, where the journal, not a retry, completes the publish.
RETRIES = {"ingest": 2}


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry only failures that may pass
    (:func:`pipelines.errors.is_transient`), never input, config or full-disk errors."""
    from pipelines.errors import is_transient

    return isinstance(state.data, BaseException) and is_transient(state.data)


def _task(name: str, step):
    def run_step(ctx: steps.RunContext) -> steps.StepReport:
        report = step(ctx)
        get_run_logger().info(report.message)
        return report

    run_step.__doc__ = step.__doc__
    # Steps share one open DuckDB connection, which cannot be hashed for caching.
    return task(
        run_step,
        name=name,
        cache_policy=NO_CACHE,
        retries=RETRIES.get(name, 0),
        retry_delay_seconds=5,
        retry_condition_fn=retry_if_transient,
    )


TASKS = {name: _task(name, step) for name, step in steps.STEPS.items()}


@flow(name="crm_pipeline")
def crm_pipeline(
    config_path: str | None = None,
    as_of: str | None = None,
    full_refresh: bool = False,
    as_of_from_schedule: bool = False,
) -> str:
    """Run the whole pipeline once; returns the run summary text.

    ``full_refresh`` processes every delivered file again and retrains the churn model;
    ``as_of_from_schedule`` (set by the ``crm serve`` deployment) makes the run's
    scheduled date, in the schedule's time zone, the as-of date.
    """
    if as_of is None and as_of_from_schedule:
        as_of = str(_scheduled_as_of(config_path))
    with steps.open_run(
        config_path, date.fromisoformat(as_of) if as_of else None, full_refresh=full_refresh
    ) as run:
        for task_run in TASKS.values():
            run.record(task_run(run.ctx))
        text = run.summary()
        create_markdown_artifact(
            key="crm-run-summary",
            markdown=f"```\n{text}\n```",
            description=f"CRM run {run.ctx.run_id}, as of {run.ctx.as_of}",
        )
    return text


@flow(name="crm_backfill")
def crm_backfill(config_path: str | None, start: str, end: str, every_days: int = 1) -> list[str]:
    """Run :func:`crm_pipeline` as of ``start``, ``start + every_days``, ... up to ``end``
    (ISO dates, both included), in order, each as its own flow run; stops at the first
    failure. Returns the run summaries."""
    return [
        crm_pipeline(config_path=config_path, as_of=str(day))
        for day in steps.backfill_dates(
            date.fromisoformat(start), date.fromisoformat(end), every_days
        )
    ]


def _scheduled_as_of(config_path: str | None) -> date:
    from prefect.runtime import flow_run

    settings = load_settings(config_path)
    return steps.scheduled_as_of(flow_run.scheduled_start_time, settings.schedule.timezone)


def build_deployment(config_path: str | None):
    """The scheduled deployment of :func:`crm_pipeline` for ``crm serve``: the cron and
    time zone of the config's ``[schedule]`` table, the config path as parameter."""
    from prefect.schedules import Cron

    from pipelines.errors import ConfigError

    settings = load_settings(config_path)
    schedule = settings.schedule
    if not schedule.cron:
        raise ConfigError(
            "[schedule].cron is missing: crm serve needs a cron expression, "
            'e.g. [schedule] cron = "0 6 * * *" and timezone = "Europe/Berlin".'
        )
    return crm_pipeline.to_deployment(
        name=schedule.deployment_name,
        schedule=Cron(schedule.cron, timezone=schedule.timezone),
        parameters={"config_path": str(settings.config_path), "as_of_from_schedule": True},
        description="CRM analytics pipeline on the config's schedule",
    )
