"""Plain helpers the tests share: a config around files in tmp_path, the flow's first
steps without Prefect, the reconciliation check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from pipelines import steps  # noqa: E402
from pipelines.config import load_settings  # noqa: E402
from pipelines.core import build as core  # noqa: E402
from pipelines.warehouse import connect_warehouse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
# the kill harness: runs steps in a child process that pauses where a test kills it
KILL_CHILD = ROOT / "tests" / "kill_child.py"

TX_COLUMNS = """
[sources.transactions.columns]
customer_id = "CustomerID"
order_id = "InvoiceNo"
order_ts = "InvoiceDate"
quantity = "Quantity"
unit_price = "UnitPrice"
status = "Status"
"""


def write_config(tmp_path: Path, body: str, validation: str = "") -> Path:
    """A crm.toml in tmp_path with the warehouse inside tmp_path."""
    text = (
        '[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "serving/crm.duckdb"\n'
        'memory_limit = "1GB"\n' + body + "\n" + validation
    )
    path = tmp_path / "crm.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_to_core(config: Path, run_id: str = "run-1") -> duckdb.DuckDBPyConnection:
    """Run the flow's first steps (ingest to core, :data:`pipelines.steps.STEPS`) without
    logging a run; returns the open connection."""
    settings = load_settings(config)
    ctx = steps.RunContext(
        settings=settings, con=connect_warehouse(settings), run_id=run_id, started_at=datetime.now()
    )
    for name in ("ingest", "clean", "validate"):
        steps.STEPS[name](ctx)
    # the core step, less its as-of date: some of these inputs hold no completed order
    core.build_core(ctx.con, run_id)
    return ctx.con


def assert_reconciled(con: duckdb.DuckDBPyConnection) -> None:
    bad = con.execute(
        "select file_path, rows_read, rows_loaded, rows_quarantined, "
        "rows_duplicate from audit.file_reconciliation where not is_balanced"
    ).fetchall()
    assert bad == []


CORE_TRANSACTIONS_DDL = """
create schema if not exists core;
create schema if not exists models;
create or replace table core.transactions (
    customer_id varchar, order_id varchar, order_at timestamp, order_date date, amount double,
    quantity double, status varchar, is_completed_order boolean, currency varchar, channel varchar,
    payment_method varchar, line_count integer
);
"""


def load_core_transactions(con: duckdb.DuckDBPyConnection, rows, order_id_digits: int = 3) -> None:
    """(customer_id, order_at 'YYYY-MM-DD HH:MM', amount[, status]) rows -> a fresh
    core.transactions with the columns the pipeline gives it; order ids o000, o001, ..."""
    con.execute(CORE_TRANSACTIONS_DDL)
    for index, row in enumerate(rows):
        customer_id, order_at, amount, *rest = row
        status = rest[0] if rest else "completed"
        con.execute(
            """
            insert into core.transactions
            select $customer_id, $order_id, $order_at::timestamp, $order_at::timestamp::date, $amount, 1,
                $status, $status = 'completed' and $amount > 0, null, null, null, 1
            """,
            {
                "customer_id": customer_id,
                "order_id": f"o{index:0{order_id_digits}d}",
                "order_at": order_at,
                "amount": amount,
                "status": status,
            },
        )


def run_child_until(
    directory: Path,
    as_of: date,
    steps: tuple[str, ...],
    pause_at: str,
    appears: str | None = None,
    timeout: float = 180,
) -> None:
    """Start a child (:data:`KILL_CHILD`) running ``steps`` of ``directory/crm.toml`` as of
    ``as_of``, wait until it pauses at ``pause_at`` (and a path matching the glob
    ``appears`` exists), then SIGKILL it."""
    name = pause_at.replace(":", "-")
    marker = directory / f"paused-at-{name}"
    log_path = directory / f"child-{name}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                str(KILL_CHILD),
                str(directory / "crm.toml"),
                as_of.isoformat(),
                ",".join(steps),
                pause_at,
                str(marker),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    try:
        deadline = time.monotonic() + timeout
        while not (marker.exists() and (appears is None or list(directory.glob(appears)))):
            if child.poll() is not None:
                pytest.fail(
                    f"the child ended ({child.returncode}) before pausing at "
                    f"{pause_at}:\n{log_path.read_text(encoding='utf-8')[-3000:]}"
                )
            assert time.monotonic() < deadline, f"the child never paused at {pause_at}"
            time.sleep(0.01)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
