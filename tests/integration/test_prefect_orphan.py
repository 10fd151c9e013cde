"""A SIGKILLed process running a Prefect flow leaves no temporary Prefect server behind
(issue 17, item 9): the server gets a parent-death signal (pipelines/prefect_server.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The child starts a flow the way `crm run` does (no API configured: Prefect starts its
# temporary server), writes the server's PID, then sleeps inside the flow until killed.
CHILD = """
import sys, time
from pipelines.cli import _quiet_prefect
_quiet_prefect()  # what crm run and crm backfill call before the flow starts
from prefect import flow

@flow
def sleeper(marker: str) -> None:
    from prefect.server.api.server import SubprocessASGIServer
    pids = [s.server_process.pid for s in SubprocessASGIServer._instances.values()
            if s.server_process is not None]
    with open(marker + ".tmp", "w") as fh:
        fh.write(",".join(map(str, pids)))
    import os
    os.replace(marker + ".tmp", marker)
    time.sleep(300)

sleeper(sys.argv[1])
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(ROOT))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    log = open(tmp_path / "child.log", "w")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker)], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 150
        while not marker.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the flow never started"
            time.sleep(0.1)
        pids = [int(p) for p in marker.read_text().split(",") if p]
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
