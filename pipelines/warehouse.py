"""The working DuckDB database: one connection with the configured memory limit, spill
directory and threads, and who holds it.

DuckDB lets one process open the working database for writing at a time. The process
that does records who it is (``<database>.holder.json``: what it is doing, its run id,
PID, since when, and its Prefect flow run when it runs in one), so that a second ``crm``
command can say which run holds the warehouse instead of failing with DuckDB's lock
error, and the next run can mark a killed run's flow run crashed
(pipelines/prefect_server.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.errors import WarehouseBusyError
from pipelines.files import make_dirs


def connect_warehouse(
    settings: Settings, holder: str | None = None, run_id: str | None = None
) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the working database with the configured limits.

    DuckDB gets a memory limit and a spill directory so that a large group-by spills to
    disk instead of failing; timestamps are handled in UTC. ``holder`` (e.g. ``"crm run"``)
    and ``run_id`` are recorded as the warehouse's holder (:func:`warehouse_holder`).

    Raises :class:`WarehouseBusyError` when another process holds the database.
    """
    wh, perms = settings.warehouse, settings.permissions
    make_dirs(wh.path.parent, perms.dir_mode, perms.group)
    try:
        con = duckdb.connect(str(wh.path))
    except duckdb.IOException as exc:
        if "set lock on file" not in str(exc).lower():
            raise
        raise WarehouseBusyError(busy_message(settings, _lock_pid(str(exc)))) from exc
    con.execute("set memory_limit = ?", [wh.memory_limit])
    temp_dir = wh.temp_directory or wh.path.parent / "duckdb_tmp"
    make_dirs(temp_dir, 0o700)  # spill files: the pipeline's only
    con.execute("set temp_directory = ?", [str(temp_dir)])
    if wh.threads:
        con.execute(f"set threads = {int(wh.threads)}")
    con.execute("set TimeZone = 'UTC'")
    _apply_warehouse_permissions(settings)
    if holder:
        record_holder(settings, holder, run_id)
    return con


def _apply_warehouse_permissions(settings: Settings) -> None:
    """The working database holds e-mails, phones and birth dates: it and its WAL get the
    file mode of ``[permissions]`` (default owner-only; its folder when created)."""
    perms, wh = settings.permissions, settings.warehouse
    for path in (wh.path, wh.path.with_name(wh.path.name + ".wal")):
        if path.exists():
            os.chmod(path, perms.file_mode)
            if perms.group:
                shutil.chown(path, group=perms.group)


def holder_path(settings: Settings) -> Path:
    wh = settings.warehouse.path
    return wh.with_name(f"{wh.name}.holder.json")


def record_holder(settings: Settings, holder: str, run_id: str | None) -> None:
    """Record this process as the holder of the working database (call with it open)."""
    path = holder_path(settings)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(
        json.dumps(
            {
                "holder": holder,
                "run_id": run_id,
                "pid": os.getpid(),
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
                "prefect_flow_run_id": _prefect_flow_run_id(),
            }
        ),
        encoding="utf-8",
    )
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _prefect_flow_run_id() -> str | None:
    """The Prefect flow run this process is running, if any (Prefect is not imported for
    it: a process that has not imported Prefect runs no flow)."""
    if "prefect" not in sys.modules:
        return None
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def dead_holder(settings: Settings) -> dict | None:
    """The holder record of a process that ended without releasing the warehouse (killed),
    or None. Read it before this process records itself over it."""
    held = _read_holder(holder_path(settings))
    if held is None or held.get("pid") == os.getpid() or _alive(held.get("pid")):
        return None
    return held


def release_holder(settings: Settings) -> None:
    """Remove this process's holder record (leave another process's alone)."""
    path = holder_path(settings)
    held = _read_holder(path)
    if held is not None and held.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def warehouse_holder(settings: Settings) -> dict | None:
    """The live holder of the working database (holder, run_id, pid, since), or None when
    no other process that is still alive recorded itself."""
    held = _read_holder(holder_path(settings))
    if held is None or held.get("pid") == os.getpid() or not _alive(held.get("pid")):
        return None
    return held


def raise_if_busy(settings: Settings) -> None:
    """Raise :class:`WarehouseBusyError` when a live process holds the working database;
    the CLI calls it before starting Prefect (10-20 s), so a second run fails at once."""
    held = warehouse_holder(settings)
    if held is not None:
        raise WarehouseBusyError(busy_message(settings, held.get("pid")))


def busy_message(settings: Settings, pid: int | None) -> str:
    """One paragraph: which run holds the warehouse, since when; nothing was changed."""
    held = _read_holder(holder_path(settings))
    if held is not None and (pid is None or held.get("pid") == pid) and _alive(held.get("pid")):
        who = (
            f"{held.get('holder', 'a crm command')}"
            + (f" {held['run_id']}" if held.get("run_id") else "")
            + f" (PID {held.get('pid')}), since {held.get('since')}"
        )
    else:
        who = f"another process{f' (PID {pid})' if pid else ''}"
    return (
        f"The working database {settings.warehouse.path} is held by {who}. "
        "DuckDB lets one process write it at a time, so this command changed nothing. "
        "Run it again when that one has ended (crm status shows the running run)."
    )


def _read_holder(path: Path) -> dict | None:
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return held if isinstance(held, dict) else None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped by its parent) holds no lock any more
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    return True


def _lock_pid(message: str) -> int | None:
    match = re.search(r"\(PID (\d+)\)", message)
    return int(match[1]) if match else None
