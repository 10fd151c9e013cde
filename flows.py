"""Prefect flows: a table of contents of the pipeline. Each task is one entry of
``pipelines.steps.STEPS``, a plain function; the how lives there."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import nullcontext
from datetime import date

# The project's own loggers (recovery warnings, skipped models, published paths) go to
# Prefect's run logs and UI, not only to the console. Prefect reads this when it is
# imported, so it is set before; a user's own setting wins.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "pipelines,models")
# The same loggers also log outside flow runs (the steps run without Prefect in tests, the
# kill harness, the benchmark): there the run-log handler has no run to send to, and says
# nothing rather than warning.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import (  # noqa: E402
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pipelines import artifacts, prefect_server, steps  # noqa: E402
from pipelines.config import load_settings  # noqa: E402

# Prefect attaches its run-log handler to these loggers; their INFO records (not only the
# root logger's WARNING and above) should reach it.
for _name in os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"].split(","):
    if _name.strip() in ("pipelines", "models") and not logging.getLogger(_name.strip()).level:
        logging.getLogger(_name.strip()).setLevel(logging.INFO)

# The environment variable naming a Prefect notification block (e.g. a Slack webhook or an
# e-mail block saved as "slack-webhook/crm-alerts") that a failed run notifies.
FAILURE_BLOCK_ENV = "CRM_FAILURE_NOTIFICATION_BLOCK"

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


def run_name(parameters: dict) -> str:
    """The flow run's name from its parameters: the as-of date it was asked for, the
    scheduled date for a scheduled run, else that the latest order decides it."""
    as_of = parameters.get("as_of")
    if as_of:
        return f"crm as of {as_of}"
    if parameters.get("as_of_from_schedule"):
        try:
            return f"crm as of {_scheduled_as_of(parameters.get('config_path'))} (scheduled)"
        except Exception:  # a broken config fails the run itself, with its own message
            return "crm as of the scheduled date"
    return "crm as of the latest order"


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    return run_name(dict(flow_run.parameters))


def _name_run_for(as_of: date) -> None:
    """Rename the current flow run for the as-of date the core step decided, when the run
    was started without one (its name then said only "the latest order")."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if flow_run.id and not flow_run.parameters.get("as_of"):
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.id, name=f"crm as of {as_of}")


def failure_message(flow_run, state) -> str:
    """The notification text of a failed run: its name, and the run's one-paragraph error."""
    return f"CRM flow run '{flow_run.name}' failed: {state.message or 'no message'}"


def notify_failure(flow, flow_run, state) -> None:
    """``on_failure`` hook of :func:`crm_pipeline`: logs the failure and, when the
    environment variable ``CRM_FAILURE_NOTIFICATION_BLOCK`` names a saved Prefect
    notification block (``"<block-type>/<name>"``, e.g. ``"slack-webhook/crm-alerts"``),
    sends the message through it. A notification that cannot be sent is logged, never
    raised: the run's own failure is what the user must see."""
    from prefect.logging import get_logger

    log = get_logger("crm.failure")
    message = failure_message(flow_run, state)
    log.error(message)
    block_name = os.environ.get(FAILURE_BLOCK_ENV)
    if not block_name:
        return
    try:
        from prefect.blocks.core import Block

        Block.load(block_name).notify(body=message, subject="CRM run failed")
    except Exception as exc:
        log.warning("could not notify %s=%s: %s", FAILURE_BLOCK_ENV, block_name, exc)


def _progress_bar():
    """A progress bar over the run's steps on a terminal; nothing when stderr is piped
    (CI, cron, log files)."""
    if not sys.stderr.isatty():
        return nullcontext(None)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        transient=True,
    )


def publish_artifacts(run: steps.Run) -> None:
    """Table artifacts of a finished run (reconciliation per file, quarantine by rule,
    model verdicts) and link artifacts to its report and exports."""
    con, run_id = run.ctx.con, run.ctx.run_id
    tables = {
        "crm-reconciliation": (
            artifacts.reconciliation_rows(con),
            "Rows read = loaded + quarantined + duplicates + erased, per file",
        ),
        "crm-quarantine-by-rule": (
            artifacts.quarantine_rows(con),
            "Rows quarantined (kept = false) and fields blanked (kept = true) per rule",
        ),
        "crm-model-verdicts": (
            artifacts.model_verdict_rows(con, run_id),
            "Whether each model was fitted, and its metrics next to their naive baselines",
        ),
    }
    for key, (rows, description) in tables.items():
        create_table_artifact(table=rows, key=key, description=f"{description} (run {run_id})")
    publish = run.reports.get("publish")
    for name, link in artifacts.output_links(publish.result if publish else {}).items():
        create_link_artifact(
            link=link, link_text=f"{name} as of {run.ctx.as_of}", key=f"crm-{name}"
        )


@flow(name="crm_pipeline", flow_run_name=_flow_run_name, on_failure=[notify_failure])
def crm_pipeline(
    config_path: str | None = None,
    as_of: date | None = None,
    full_refresh: bool = False,
    as_of_from_schedule: bool = False,
) -> str:
    """Run the whole pipeline once; returns the run summary text.

    ``as_of`` is the observation date (default: the date of the latest completed order);
    ``full_refresh`` processes every delivered file again and retrains the churn model;
    ``as_of_from_schedule`` (set by the ``crm serve`` deployment) makes the run's
    scheduled date, in the schedule's time zone, the as-of date. A failed run calls
    :func:`notify_failure`.
    """
    if as_of is None and as_of_from_schedule:
        as_of = _scheduled_as_of(config_path)
    # a killed earlier run left its flow run RUNNING: mark it crashed (issue 17, item 9)
    prefect_server.mark_crashed_run(load_settings(config_path))
    with (
        steps.open_run(config_path, as_of, full_refresh=full_refresh) as run,
        _progress_bar() as bar,
    ):
        progress_id = create_progress_artifact(0.0, key="crm-progress", description="steps done")
        bar_task = bar.add_task("crm run", total=len(TASKS)) if bar else None
        for done, (name, task_run) in enumerate(TASKS.items(), start=1):
            if bar:
                bar.update(bar_task, description=f"crm run: {name}")
            if run.record(task_run(run.ctx)).decided.get("as_of"):
                _name_run_for(run.ctx.as_of)
            update_progress_artifact(progress_id, 100.0 * done / len(TASKS))
            if bar:
                bar.advance(bar_task)
        text = run.summary()
        create_markdown_artifact(
            key="crm-run-summary",
            markdown=f"```\n{text}\n```",
            description=f"CRM run {run.ctx.run_id}, as of {run.ctx.as_of}",
        )
        publish_artifacts(run)
    return text


@flow(name="crm_backfill")
def crm_backfill(config_path: str | None, start: date, end: date, every_days: int = 1) -> list[str]:
    """Run :func:`crm_pipeline` as of ``start``, ``start + every_days``, ... up to ``end``
    (both included), in order, each as its own flow run; stops at the first failure.
    Returns the run summaries."""
    return [
        crm_pipeline(config_path=config_path, as_of=day)
        for day in steps.backfill_dates(start, end, every_days)
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
        # one run at a time: runs share the warehouse file, which DuckDB locks; a run
        # that is due while another still runs waits for it instead of failing
        concurrency_limit=1,
    )
