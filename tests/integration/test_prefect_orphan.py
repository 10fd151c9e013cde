"""A SIGKILLed ``crm run`` leaves no temporary Prefect server behind, and the next run
marks its flow run crashed (issue 17, item 9; pipelines/prefect_server.py). One test (two
processes, each starting Prefect's temporary server: ~40-60 s)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "publish"

# The next run: what crm_pipeline does first (the whole pipeline is not needed for it),
# then the old flow run's state.
NEXT = """
import sys
from pipelines.cli import _quiet_prefect
_quiet_prefect()
from prefect import flow

@flow
def next_run(config: str, old: str) -> None:
    from prefect.client.orchestration import get_client
    from pipelines import prefect_server
    from pipelines.config import load_settings

    marked = prefect_server.mark_crashed_run(load_settings(config))
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(old).state
    print("RESULT", marked, state.type.value, state.message, flush=True)

next_run(sys.argv[1], sys.argv[2])
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped) is not a running server
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def server_children(pid: int) -> list[int]:
    """PIDs of the Prefect servers (uvicorn) that process ``pid`` started."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and b"uvicorn" in cmdline:
            found.append(int(status.parent.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_killed_crm_run_leaves_no_prefect_server_and_the_next_run_marks_it_crashed(tmp_path):
    for f in FIXTURES.iterdir():
        shutil.copy(f, tmp_path)
    config = tmp_path / "crm.toml"
    holder = tmp_path / "wh" / "crm.duckdb.holder.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(ROOT))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    log = open(tmp_path / "child.log", "w")
    # a real crm run, killed once its flow run holds the warehouse (inside its first step)
    child = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 150
        while not (holder.exists() and "prefect_flow_run_id" in holder.read_text()):
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run never opened the warehouse"
            time.sleep(0.05)
        held = json.loads(holder.read_text())
        assert held["pid"] == child.pid and held["prefect_flow_run_id"]
        pids = server_children(child.pid)
        assert pids and all(alive(p) for p in pids)  # its temporary server, running
        child.send_signal(signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if alive(p)]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()
    for pid in left:  # clean up before failing: never leave our own server behind
        os.kill(pid, signal.SIGKILL)
    assert left == [], "the temporary Prefect server outlived the killed crm run"
    # the next run marks the killed run's flow run crashed (it was RUNNING for ever)
    flow_run_id = held["prefect_flow_run_id"]
    done = subprocess.run(
        [sys.executable, "-c", NEXT, str(config), flow_run_id],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert result, done.stdout[-2000:] + done.stderr[-3000:]
    _, marked, state, message = result[0].split(" ", 3)
    assert (marked, state) == (flow_run_id, "CRASHED")
    assert held["run_id"] in message and "ended without finishing" in message
