"""The whole flow under Prefect's test harness (one temporary server per test session)."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"

pytestmark = pytest.mark.flow


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def sample_config(tmp: Path) -> Path:
    text = (SAMPLE / "crm.toml").read_text(encoding="utf-8")
    text = text.replace('path = "../warehouse/crm.duckdb"', 'path = "wh/crm.duckdb"')
    text = text.replace('serving_path = "../serving/crm.duckdb"',
                        'serving_path = "serving/crm.duckdb"')
    for name in ("transactions", "customers", "events"):
        text = text.replace(f'path = "{name}', f'path = "{SAMPLE}{os.sep}{name}')
    config = tmp / "crm.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_crm_pipeline_runs_end_to_end_on_the_sample(prefect_harness, tmp_path):
    from flows import crm_pipeline

    config = sample_config(tmp_path)
    text = crm_pipeline(config_path=str(config))
    assert "as of 2025-12-31" in text
    assert "66 duplicate records unified" in text
    assert "bgnbd        r" in text and "holdout MAE" in text
    assert "roc_auc" in text
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    status, as_of, steps = con.execute(
        "select status, as_of::varchar, rows_per_step from audit.runs").fetchall()[0]
    assert (status, as_of) == ("succeeded", "2025-12-31")
    assert '"customer_360"' in steps
    rows, customers = con.execute(
        "select count(*), count(distinct customer_id) from marts.customer_360").fetchall()[0]
    assert rows == customers == 3300  # every unified customer is known by the as-of date
    con.close()
    from pipelines.runlog import format_latest_run

    assert ": succeeded" in format_latest_run(str(config))


def test_a_failing_step_marks_the_run_failed_with_its_message(prefect_harness, tmp_path):
    from flows import crm_pipeline
    from pipelines.errors import InputError

    (tmp_path / "tx.csv").write_text("InvoiceNo,InvoiceDate\nA1,2024-01-01\n")
    config = tmp_path / "crm.toml"
    config.write_text('[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "s/crm.duckdb"\n'
                      '[sources.transactions]\npath = "tx.csv"\n'
                      '[sources.transactions.columns]\ncustomer_id = "Cust"\n'
                      'order_ts = "InvoiceDate"\namount = "Amount"\n')
    with pytest.raises(InputError, match="Cust"):
        crm_pipeline(config_path=str(config))
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    status, message = con.execute("select status, message from audit.runs").fetchall()[0]
    assert status == "failed" and "Cust" in message


def test_serve_registers_the_configured_schedule(prefect_harness, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client

    from flows import build_deployment

    config = sample_config(tmp_path)
    config.write_text(config.read_text() + '\n[schedule]\ncron = "15 6 * * 1-5"\n'
                      'timezone = "Europe/Berlin"\n')
    deployment_id = build_deployment(str(config)).apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    deployment = asyncio.run(read())
    assert deployment.name == "crm-scheduled"
    assert deployment.parameters == {"config_path": str(config)}
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("15 6 * * 1-5",
                                                                    "Europe/Berlin")


def test_status_prints_the_latest_run(prefect_harness, tmp_path):
    from pipelines.runlog import format_latest_run

    config = sample_config(tmp_path)
    assert format_latest_run(str(config)).startswith("No run yet")
