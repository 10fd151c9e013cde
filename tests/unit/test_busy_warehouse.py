"""A second command while a run holds the working database (issue 17, item 8), and which
failures Prefect retries (item 11)."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from pipelines import warehouse
from pipelines.cli import main
from pipelines.config import load_settings
from pipelines.errors import ConfigError, InputError, WarehouseBusyError, is_transient
from pipelines.runlog import format_latest_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "crm.toml"
    path.write_text(
        textwrap.dedent("""
            [warehouse]
            path = "wh/crm.duckdb"
            serving_path = "serving/crm.duckdb"
            [sources.transactions]
            path = "transactions.csv"
            format = "csv"
            [sources.transactions.columns]
            customer_id = "CustomerID"
            order_ts = "InvoiceDate"
            amount = "Amount"
        """),
        encoding="utf-8",
    )
    (tmp_path / "transactions.csv").write_text(
        "CustomerID,InvoiceDate,Amount\n1,2024-01-01 10:00:00,5\n", encoding="utf-8"
    )
    return path


@pytest.fixture
def running_run(config):
    """A child process that holds the working database as the run ``run-held`` would."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[2]);"
            "from pipelines import warehouse; from pipelines.config import load_settings;"
            "con = warehouse.connect_warehouse(load_settings(sys.argv[1]), 'crm run', 'run-held');"
            "con.execute('create table t as select 1'); print('open', flush=True); time.sleep(120)",
            str(config),
            str(ROOT),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "open"
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_second_connection_names_the_run_that_holds_the_warehouse(config, running_run):
    settings = load_settings(config)
    with pytest.raises(WarehouseBusyError) as busy:
        warehouse.connect_warehouse(settings, "crm run", "run-second")
    message = str(busy.value)
    assert f"held by crm run run-held (PID {running_run.pid}), since 20" in message
    assert "changed nothing" in message and "\n" not in message


def test_a_second_crm_run_exits_with_its_own_code_and_changes_nothing(config, running_run, capsys):
    before = (config.parent / "wh" / "crm.duckdb").read_bytes()
    assert main(["run", "--config", str(config)]) == WarehouseBusyError.exit_code == 5
    err = capsys.readouterr().err
    assert "crm run run-held" in err and "Traceback" not in err and "unexpectedly" not in err
    assert (config.parent / "wh" / "crm.duckdb").read_bytes() == before


def test_crm_status_during_a_run_shows_the_running_run(config, running_run):
    text = format_latest_run(str(config))
    assert text.startswith("Running: crm run run-held")
    assert f"PID {running_run.pid}" in text


def test_a_dead_holders_record_does_not_block_the_next_command(config, running_run):
    settings = load_settings(config)
    running_run.kill()
    running_run.wait()
    con = warehouse.connect_warehouse(settings, "crm run", "run-next")
    try:
        assert con.execute("select * from t").fetchall() == [(1,)]
        assert warehouse.warehouse_holder(settings) is None  # ours, not another's
    finally:
        con.close()
        warehouse.release_holder(settings)
    assert not warehouse.holder_path(settings).exists()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (OSError(errno.EIO, "Input/output error"), True),
        (TimeoutError(errno.ETIMEDOUT, "timed out"), True),
        (duckdb.IOException("IO Error: could not read block"), True),
        (OSError(errno.ENOSPC, "No space left on device"), False),
        (OSError(errno.EACCES, "Permission denied"), False),
        (FileNotFoundError(errno.ENOENT, "No such file"), False),
        (duckdb.IOException("IO Error: No space left on device"), False),
        (InputError("bad file"), False),
        (ConfigError("bad key"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_transient_failures_are_retried(error, transient):
    from prefect.states import Failed

    from flows import TASKS, retry_if_transient

    assert is_transient(error) is transient
    assert retry_if_transient(None, None, Failed(data=error)) is transient
    assert TASKS["ingest"].retry_condition_fn is retry_if_transient
    assert TASKS["publish"].retries == 0
