"""The whole flow under Prefect's test harness (one temporary server per test session)."""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines import steps as steps_module

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"

pytestmark = pytest.mark.flow


def sample_config(tmp: Path) -> Path:
    text = (SAMPLE / "crm.toml").read_text(encoding="utf-8")
    text = text.replace('path = "../warehouse/crm.duckdb"', 'path = "wh/crm.duckdb"')
    text = text.replace(
        'serving_path = "../serving/crm.duckdb"', 'serving_path = "serving/crm.duckdb"'
    )
    for name in ("transactions", "customers", "events"):
        text = text.replace(f'path = "{name}', f'path = "{SAMPLE}{os.sep}{name}')
    text = text.replace('path = "../../exports"', 'path = "exports"')
    text = text.replace('path = "../../reports"', 'path = "reports"')
    config = tmp / "crm.toml"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def sample_run(prefect_harness, tmp_path_factory):
    """One successful run of the whole flow on the bundled sample."""
    from flows import crm_pipeline

    tmp = tmp_path_factory.mktemp("flow")
    config = sample_config(tmp)
    return tmp, config, crm_pipeline(config_path=str(config))


def _digest(path: Path) -> str:
    import hashlib

    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_crm_pipeline_runs_end_to_end_on_the_sample(sample_run):
    tmp, config, text = sample_run
    assert "as of 2025-12-31" in text
    assert "66 duplicate records unified" in text
    # the chosen customer-base model's parameters, the choice and the candidates' holdout MAE
    assert re.search(r"(bgnbd|mbgnbd|pareto_nbd) +r ", text) and "holdout MAE" in text
    assert "Model choice: " in text and "verdict: holdout MAE margin" in text
    assert "roc_auc" in text
    con = duckdb.connect(str(tmp / "wh" / "crm.duckdb"), read_only=True)
    status, as_of, steps = con.execute(
        "select status, as_of::varchar, rows_per_step from audit.runs"
    ).fetchall()[0]
    assert (status, as_of) == ("succeeded", "2025-12-31")
    assert '"customer_360"' in steps
    # issue 14: reasons for every high-band customer, none for the low band; the CLV
    # interval holds the point estimate
    (high_without, low_with, clv_outside, clv_missing) = con.execute("""
        select count(*) filter (where churn_band = 'high' and churn_reasons is null),
               count(*) filter (where churn_band = 'low' and churn_reasons is not null),
               count(*) filter (where predicted_clv_low > predicted_clv + 1e-9
                                   or predicted_clv_high < predicted_clv - 1e-9),
               count(*) filter (where predicted_clv is not null and predicted_clv_low is null)
        from marts.customer_360""").fetchall()[0]
    assert (high_without, low_with, clv_outside, clv_missing) == (0, 0, 0, 0)
    con.close()
    from pipelines.runlog import format_latest_run

    status_text = format_latest_run(str(config))
    assert ": succeeded" in status_text
    # every step's wall seconds, the first run processing every delivered file
    seconds = json.loads(status_text.split("seconds per step: ")[1].splitlines()[0])
    assert list(seconds) == list(steps_module.STEPS) and all(v >= 0 for v in seconds.values())
    assert "This run:" in text and "1 file(s) processed, 0 reused" in text


def test_the_run_summary_is_a_prefect_markdown_artifact(sample_run):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["crm-run-summary"]))
            )

    artifacts = asyncio.run(read())
    assert artifacts and artifacts[0].type == "markdown"
    assert "66 duplicate records unified" in artifacts[0].data


def test_the_run_publishes_database_exports_and_report(sample_run):
    import json

    tmp, _, _ = sample_run
    serving = duckdb.connect(str(tmp / "serving" / "crm.duckdb"), read_only=True)
    rows, customers = serving.execute(
        "select count(*), count(distinct customer_id) from marts.customer_360"
    ).fetchall()[0]
    assert rows == customers == 3300  # every unified customer is known by the as-of date
    schemas = {
        r[0] for r in serving.execute("select distinct schema_name from duckdb_tables()").fetchall()
    }
    assert schemas == {"marts"}  # nothing but the published tables
    consenting = {
        r[0]
        for r in serving.execute(
            "select customer_id from marts.customer_360 where marketing_consent"
        ).fetchall()
    }
    serving.close()
    export_dir = tmp / "exports" / "2025-12-31"
    manifest = json.loads((export_dir / "manifest.json").read_text())
    exported = set()
    for entry in manifest["files"]:
        if entry["name"].endswith(".csv"):
            lines = (export_dir / entry["name"]).read_text().splitlines()[1:]
            exported |= {line.split(",")[0] for line in lines}
    assert exported and exported <= consenting
    html = (tmp / "reports" / "2025-12-31" / "report.html").read_text()
    assert "CRM run report" in html and 'class="unavailable"' not in html


def test_a_step_failing_before_publish_leaves_the_last_good_outputs(sample_run, monkeypatch):
    from flows import crm_pipeline
    from pipelines import marts
    from pipelines.errors import StepError

    tmp, config, _ = sample_run
    outputs = [tmp / "serving" / "crm.duckdb", tmp / "exports", tmp / "reports"]
    before = [_digest(p) for p in outputs]

    def broken(*args, **kwargs):
        raise StepError("injected failure in the marts step")

    monkeypatch.setattr(marts, "build_marts", broken)
    with pytest.raises(StepError, match="injected failure"):
        crm_pipeline(config_path=str(config))
    assert [_digest(p) for p in outputs] == before
    con = duckdb.connect(str(tmp / "wh" / "crm.duckdb"), read_only=True)
    statuses = con.execute("select status, message from audit.runs order by started_at").fetchall()
    assert statuses[-1] == ("failed", "injected failure in the marts step")
    assert statuses[0][0] == "succeeded"


def test_a_failing_step_marks_the_run_failed_with_its_message(prefect_harness, tmp_path):
    from flows import crm_pipeline
    from pipelines.errors import InputError

    (tmp_path / "tx.csv").write_text("InvoiceNo,InvoiceDate\nA1,2024-01-01\n")
    config = tmp_path / "crm.toml"
    config.write_text(
        '[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "s/crm.duckdb"\n'
        '[sources.transactions]\npath = "tx.csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "Cust"\n'
        'order_ts = "InvoiceDate"\namount = "Amount"\n'
    )
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
    text = config.read_text().replace('cron = "0 6 * * *"', 'cron = "15 6 * * 1-5"')
    assert 'cron = "15 6 * * 1-5"' in text
    config.write_text(text)
    deployment_id = build_deployment(str(config)).apply()

    async def read():
        async with get_client() as client:
            return await client.read_deployment(deployment_id)

    deployment = asyncio.run(read())
    assert deployment.name == "crm-scheduled"
    # a scheduled run is as of its scheduled date
    assert deployment.parameters == {"config_path": str(config), "as_of_from_schedule": True}
    [schedule] = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("15 6 * * 1-5", "Europe/Berlin")


def test_backfill_runs_each_date_in_order_and_a_scheduled_run_takes_its_date(
    prefect_harness, tmp_path
):
    from datetime import UTC, datetime

    from flows import crm_backfill, crm_pipeline

    (tmp_path / "tx.csv").write_text(
        "Cust,InvoiceDate,Amount\n"
        + "".join(f"c{i % 7},2024-01-{1 + i % 20:02d} 10:00:00,{5 + i}\n" for i in range(60))
    )
    config = tmp_path / "crm.toml"
    config.write_text(
        '[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "s/crm.duckdb"\n'
        '[exports]\npath = "exports"\n[report]\npath = "reports"\n'
        '[sources.transactions]\npath = "tx.csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "Cust"\n'
        'order_ts = "InvoiceDate"\namount = "Amount"\n'
    )
    summaries = crm_backfill(
        config_path=str(config), start="2024-01-10", end="2024-01-15", every_days=2
    )
    assert len(summaries) == 3
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == [
        "2024-01-10",
        "2024-01-12",
        "2024-01-14",
        "latest",
    ]
    assert (tmp_path / "exports" / "latest").readlink() == Path("2024-01-14")  # the newest
    crm_pipeline(config_path=str(config), as_of_from_schedule=True)
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    runs = con.execute("select as_of, status from audit.runs order by started_at").fetchall()
    con.close()
    # an ad-hoc run's scheduled start is when it was created: today
    assert runs == [
        (date(2024, 1, 10), "succeeded"),
        (date(2024, 1, 12), "succeeded"),
        (date(2024, 1, 14), "succeeded"),
        (datetime.now(UTC).date(), "succeeded"),
    ]


def test_status_prints_the_latest_run(prefect_harness, tmp_path):
    from pipelines.runlog import format_latest_run

    config = sample_config(tmp_path)
    assert format_latest_run(str(config)).startswith("No run yet")


def test_a_run_is_named_for_its_as_of_date_and_shows_its_tables_and_outputs(sample_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterName,
    )

    tmp, _, _ = sample_run
    with get_client(sync_client=True) as client:
        # started without --as-of, renamed once the core step decided the date
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["crm as of 2025-12-31"]))
        )
        # this test's run only: other tests in the session run the sample as of that date too
        completed = [
            r.id
            for r in runs
            if r.state
            and r.state.is_completed()
            and str(r.parameters.get("config_path", "")).startswith(str(tmp))
        ]
        assert completed
        artifacts = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=completed))
            )
            if a.key
        }
    reconciliation = json.loads(artifacts["crm-reconciliation"].data)
    assert {row["source"] for row in reconciliation} == {"transactions", "customers", "events"}
    assert all(row["is_balanced"] for row in reconciliation)
    quarantine = json.loads(artifacts["crm-quarantine-by-rule"].data)
    con = duckdb.connect(str(tmp / "wh" / "crm.duckdb"), read_only=True)
    try:
        blanked = con.execute("select count(*) from quarantine.field_issues").fetchall()[0][0]
        dropped = sum(
            con.execute(f"select count(*) from quarantine.{s}").fetchall()[0][0]
            for s in ("transactions", "customers", "events")
        )
    finally:
        con.close()
    assert sum(r["rows"] for r in quarantine if r["kept"]) == blanked
    # a row that breaks two rules counts for both
    assert sum(r["rows"] for r in quarantine if not r["kept"]) >= dropped
    verdicts = json.loads(artifacts["crm-model-verdicts"].data)
    assert {"bgnbd", "churn"} <= {row["model"] for row in verdicts}
    report_uri = (tmp / "reports" / "2025-12-31" / "report.html").as_uri()
    assert artifacts["crm-report"].data == f"[report as of 2025-12-31]({report_uri})"
    exports_uri = (tmp / "exports" / "2025-12-31").as_uri()
    assert artifacts["crm-exports"].data == f"[exports as of 2025-12-31]({exports_uri})"
    assert artifacts["crm-progress"].data == 100.0
    # the run's Data Docs, beside the report and linked from it
    report_dir = tmp / "reports" / "2025-12-31"
    assert (report_dir / "data_docs" / "index.html").is_file()
    assert 'href="data_docs/index.html"' in (report_dir / "report.html").read_text("utf-8")
    pages = list((report_dir / "data_docs" / "validations").rglob("*.html"))
    assert {p.relative_to(report_dir / "data_docs" / "validations").parts[0] for p in pages} == {
        "transactions_suite",
        "customers_suite",
        "events_suite",
    }


def test_the_deployment_runs_one_flow_run_at_a_time(prefect_harness, tmp_path):
    from flows import build_deployment

    assert build_deployment(str(sample_config(tmp_path))).concurrency_limit == 1


def test_a_failed_run_calls_the_failure_hook_without_masking_the_error(
    prefect_harness, tmp_path, monkeypatch, caplog
):
    from flows import crm_pipeline
    from pipelines.errors import InputError

    # a block that does not exist: the hook says so in the log, the run's error stays
    monkeypatch.setenv("CRM_FAILURE_NOTIFICATION_BLOCK", "slack-webhook/no-such-block")
    (tmp_path / "tx.csv").write_text("InvoiceNo,InvoiceDate\nA1,2024-01-01\n")
    config = tmp_path / "crm.toml"
    config.write_text(
        '[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "s/crm.duckdb"\n'
        '[sources.transactions]\npath = "tx.csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "Cust"\n'
        'order_ts = "InvoiceDate"\namount = "Amount"\n'
    )
    with caplog.at_level("WARNING", logger="prefect.crm.failure"):
        with pytest.raises(InputError, match="Cust"):
            crm_pipeline(config_path=str(config))
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("crm.failure")]
    assert any("failed:" in m and "Cust" in m for m in messages), messages
    assert any("could not notify" in m and "no-such-block" in m for m in messages), messages
