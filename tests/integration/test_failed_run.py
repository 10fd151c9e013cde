"""A failed ``crm run`` ends with its one-paragraph message: nothing from DuckDB's binding
("nanobind: leaked ...") after it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.helpers import TX_COLUMNS, write_config

# Prefect's own log lines ("12:35:41.338 | INFO | prefect - Stopping temporary server")
PREFECT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ")


def test_a_failed_run_ends_with_its_message_and_nothing_else(tmp_path):
    # every row lacks a customer id: validation stops the run (exit 3, input data)
    (tmp_path / "tx1.csv").write_text(
        "CustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice,Status\n"
        ",1,2025-01-01 10:00:00,1,2.0,completed\n,2,2025-01-02 10:00:00,1,2.0,completed\n",
        encoding="utf-8",
    )
    config = write_config(tmp_path, f'[sources.transactions]\npath = "tx*.csv"\n{TX_COLUMNS}')
    env = dict(os.environ, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    env.pop("CRM_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    message = [i for i, line in enumerate(lines) if line.startswith("crm run failed: ")]
    assert len(message) == 1, result.stderr
    assert "customer_id_present" in lines[message[0]]
    after = lines[message[0] + 1 :]
    assert "nanobind" not in result.stderr
    assert all(PREFECT_LOG_LINE.match(line) for line in after), after
