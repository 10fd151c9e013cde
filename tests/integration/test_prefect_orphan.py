"""A SIGKILLed process running a Prefect flow leaves no temporary Prefect server behind,
and the next run marks its flow run crashed (issue 17, item 9; pipelines/prefect_server.py).
One test (two processes, each starting Prefect's temporary server: ~40 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TX_COLUMNS, write_config

ROOT = Path(__file__).resolve().parents[2]

# The child starts a flow the way `crm run` does (no API configured: Prefect starts its
# temporary server), writes the server's PID, then sleeps inside the flow until killed.
CHILD = """
import sys, time
from pipelines.cli import _quiet_prefect
_quiet_prefect()  # what crm run and crm backfill call before the flow starts
from prefect import flow

@flow
def sleeper(config: str, marker: str) -> None:
    import os
    from prefect.runtime import flow_run
    from prefect.server.api.server import SubprocessASGIServer
    from pipelines.config import load_settings
    from pipelines.warehouse import record_holder

    # what crm run records when it opens the warehouse
    record_holder(load_settings(config), "crm run", "run-killed")
    pids = [s.server_process.pid for s in SubprocessASGIServer._instances.values()
            if s.server_process is not None]
    with open(marker + ".tmp", "w") as fh:
        fh.write(str(flow_run.id) + " " + ",".join(map(str, pids)))
    os.replace(marker + ".tmp", marker)
    time.sleep(300)

sleeper(sys.argv[1], sys.argv[2])
"""

# The next run: what crm_pipeline does first, then the old flow run's state.
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_a_killed_flow_process_leaves_no_prefect_server(tmp_path):
    marker = tmp_path / "server-pids"
    config = write_config(tmp_path, f'[sources.transactions]\npath = "tx*.csv"\n{TX_COLUMNS}')
    (tmp_path / "wh").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(ROOT))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    log = open(tmp_path / "child.log", "w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config), str(marker)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 150
        while not marker.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the flow never started"
            time.sleep(0.1)
        flow_run_id, server_pids = marker.read_text().split(" ")
        pids = [int(p) for p in server_pids.split(",") if p]
        assert pids and all(alive(p) for p in pids)  # a server, running
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
    assert left == [], "the temporary Prefect server outlived the killed process"
    # the next run marks the killed run's flow run crashed (it was RUNNING for ever)
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
    assert "run-killed" in message and "ended without finishing" in message
