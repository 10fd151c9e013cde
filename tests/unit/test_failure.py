"""A failed run's frames are released before exit, so DuckDB's binding has nothing left
to report as leaked after the error message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A function that fails while its frame holds an open connection and a result, the way a
# step fails; the caller catches the error as `crm` does and optionally releases it.
FAILING = """
import sys
import threading
import time

import duckdb
from pipelines.failure import release_failure

def step():
    con = duckdb.connect()
    result = con.sql("select 42 as answer")
    con.close()
    try:
        raise RuntimeError("the step failed")
    except RuntimeError as exc:
        failure = exc  # a cycle: the error's frame holds the error (Prefect's engine does)
        raise failure

try:
    step()
except RuntimeError as exc:
    print("crm run failed: the step failed", file=sys.stderr)
    if sys.argv[1] == "release":
        release_failure(exc)
    # kept to the end by a thread that outlives the interpreter's clean-up, as Prefect's
    # event-loop thread keeps the failed run's state
    keeper = threading.Thread(target=lambda e=exc: time.sleep(3600), daemon=True)
    keeper.start()
"""


@pytest.mark.parametrize("release", [True, False])
def test_a_released_failure_leaves_nothing_for_duckdb_to_report(release):
    result = subprocess.run(
        [sys.executable, "-c", FAILING, "release" if release else "keep"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    if release:
        assert result.stderr == "crm run failed: the step failed\n"
    else:
        # the condition the fix removes: without it the binding reports the connection
        assert "nanobind: leaked" in result.stderr
