"""The run log (``audit.runs``): start and end of each run, the as-of rule, and the text
of ``crm status``."""

from __future__ import annotations

import json
import platform
import uuid
from datetime import UTC, date, datetime
from importlib import metadata

import duckdb

from pipelines.config import Settings
from pipelines.sqlrun import ensure_bookkeeping_tables

_VERSIONED = (
    "duckdb",
    "polars",
    "pyarrow",
    "pandas",
    "lifetimes",
    "scikit-learn",
    "prefect",
    "great-expectations",
)


def new_run_id(started_at: datetime) -> str:
    return started_at.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def package_versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    """Python's version and each installed distribution's in ``names`` ("absent" if not
    installed)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


INTERRUPTED_MESSAGE = (
    "The run ended without recording its end: its process was killed or "
    "crashed. Each output it had not yet swapped into place was left as "
    "it was."
)


def record_run_start(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    started_at: datetime,
    requested_as_of: date | None,
) -> None:
    """Log the run as running. Runs still 'running' are dead: DuckDB's lock on the working
    database lets one process write it at a time, so they are marked interrupted."""
    ensure_bookkeeping_tables(con)
    # a warehouse made before publications were recorded: its succeeded runs published
    con.execute("""
        insert into audit.publications
        select run_id, as_of, ended_at, null from audit.runs
        where status = 'succeeded' and not exists (select 1 from audit.publications)""")
    con.execute(
        "update audit.runs set status = 'interrupted', message = ? where status = 'running'",
        [INTERRUPTED_MESSAGE],
    )
    con.execute(
        "insert into audit.runs (run_id, started_at, status, requested_as_of, config_path, "
        "config_sha256, package_versions, runner, buckets) "
        "values (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
        [
            run_id,
            started_at,
            requested_as_of,
            str(settings.config_path) if settings.config_path else None,
            settings.config_sha256,
            json.dumps(package_versions()),
            settings.execution.runner,
            settings.execution.buckets if settings.execution.runner == "dask" else None,
        ],
    )


def record_run_end(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    status: str,
    as_of: date | None,
    rows_per_step: dict,
    message: str | None = None,
    *,
    step_seconds: dict | None = None,
) -> None:
    """Log the run's end: status (succeeded | failed), as-of date, counts per step (files
    processed and reused among them), wall seconds per step done."""
    ensure_bookkeeping_tables(con)
    con.execute(
        "update audit.runs set ended_at = ?, status = ?, as_of = ?, rows_per_step = ?, "
        "message = ?, step_seconds = ? where run_id = ?",
        [
            datetime.now(UTC).replace(tzinfo=None),
            status,
            as_of,
            json.dumps(rows_per_step, default=str),
            message,
            json.dumps(step_seconds or {}),
            run_id,
        ],
    )


def resolve_as_of(con: duckdb.DuckDBPyConnection, requested: date | None) -> date:
    """The observation date: as requested, else the date of the latest completed order.

    Never the clock, so the same inputs give the same outputs.
    """
    if requested is not None:
        return requested
    latest = con.execute(
        "select max(order_date) from core.transactions where is_completed_order"
    ).fetchall()[0][0]
    if latest is None:
        from pipelines.errors import InputError

        raise InputError(
            "There is no completed order in the inputs, so no as-of date can be "
            "derived. Pass --as-of YYYY-MM-DD or check the transaction status "
            "values."
        )
    return latest


def latest_run(config_path: str | None) -> dict | None:
    """The latest run of the configured warehouse as a JSON-ready mapping (``crm status
    --json``), or ``None`` when there has been no run.

    Keys: warehouse, run_id, status, started_at, ended_at (ISO 8601 text), as_of (a date),
    config_sha256, rows_per_step, step_seconds (seconds), package_versions, message,
    pending_erasure and pending_publish (what the next crm command finishes first, or
    None). While a run or an erasure holds the warehouse, status is "running" and the
    mapping says who holds it (holder, pid, since) instead of the run log, which cannot be
    read until it ends. Opens the working database read-only.
    """
    from pipelines.config import load_settings
    from pipelines.erasure import pending_erasure
    from pipelines.errors import CrmError
    from pipelines.publish.journal import pending_publish

    settings = load_settings(config_path)
    path = settings.warehouse.path
    if not path.exists():
        return None
    pending = {
        "pending_erasure": pending_erasure(settings),
        "pending_publish": pending_publish(settings),
    }
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        from pipelines.warehouse import warehouse_holder

        held = warehouse_holder(settings)
        if held is not None:
            # the writer's lock keeps readers out; its holder record says who it is
            return {
                "warehouse": str(path),
                "run_id": held.get("run_id"),
                "status": "running",
                "holder": held.get("holder"),
                "pid": held.get("pid"),
                "since": held.get("since"),
            } | pending
        raise CrmError(
            f"Cannot open {path} to read the run log ({str(exc).splitlines()[0]}); "
            "a run may be writing it right now. Try again when it ends."
        ) from exc
    try:
        # step_seconds came with incremental runs; a warehouse opened read-only cannot
        # gain the column, so an older one shows none
        has_seconds = con.execute("""
            select count(*) from information_schema.columns where table_schema = 'audit'
              and table_name = 'runs' and column_name = 'step_seconds'""").fetchall()[0][0]
        seconds = "step_seconds" if has_seconds else "null"
        rows = con.execute(f"""
            select run_id, status, started_at, ended_at, as_of, config_sha256,
                   package_versions, rows_per_step, message, {seconds}
            from audit.runs order by started_at desc limit 1""").fetchall()
    except duckdb.CatalogException:
        rows = []
    finally:
        con.close()
    if not rows:
        return None
    run_id, status, started, ended, as_of, sha, versions, steps, message, step_seconds = rows[0]
    if status == "running":
        # we could open the database read-only, so no process is writing it: the run died
        status, message = "interrupted", INTERRUPTED_MESSAGE
    return {
        "warehouse": str(path),
        "run_id": run_id,
        "status": status,
        "started_at": started.isoformat() if started else None,
        "ended_at": ended.isoformat() if ended else None,
        "as_of": str(as_of) if as_of else None,
        "config_sha256": sha,
        "rows_per_step": _json_or_none(steps),
        "step_seconds": _json_or_none(step_seconds),
        "package_versions": _json_or_none(versions),
        "message": message,
    } | pending


def _json_or_none(text: str | None):
    return json.loads(text) if text else None


def format_latest_run(config_path: str | None) -> str:
    """The latest run of the configured warehouse, as text for ``crm status``.

    Opens the working database read-only; says so plainly when there has been no run,
    and who holds the warehouse while a run or an erasure is under way.
    """
    from pipelines.config import load_settings

    run = latest_run(config_path)
    if run is None:
        path = load_settings(config_path).warehouse.path
        if not path.exists():
            return f"No run yet: {path} does not exist. Start one with crm run."
        return "No run yet. Start one with crm run."
    if "holder" in run:
        lines = [
            f"Running: {run['holder']} {run['run_id'] or ''}".rstrip(),
            f"  since {run['since']}, PID {run['pid']}",
            "  the run log can be read when it ends",
        ]
    else:
        sha = run["config_sha256"]
        lines = [
            f"Latest run {run['run_id']}: {run['status']}",
            f"  started {run['started_at']}, ended {run['ended_at']}",
            f"  as of {run['as_of']}; config sha256 {sha[:12] if sha else '-'}",
            f"  rows per step: {_compact(run['rows_per_step'])}",
            f"  seconds per step: {_compact(run['step_seconds']) if run['step_seconds'] else '-'}",
            f"  versions: {_compact(run['package_versions'])}",
        ]
        if run["message"]:
            lines.append(f"  message: {run['message']}")
    erasure, publish = run["pending_erasure"], run["pending_publish"]
    if erasure:
        lines.append(
            f"  erasure {erasure['run_id']} (since {erasure['since']}) is not finished: "
            "the next crm command finishes it first"
        )
    if publish:
        lines.append(
            f"  the publish of run {publish['run_id']} was interrupted: the next crm "
            "command completes it first"
        )
    return "\n".join(lines)


def _compact(value) -> str:
    return json.dumps(value, separators=(", ", ": ")) if value is not None else "-"
