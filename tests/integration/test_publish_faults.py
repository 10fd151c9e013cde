"""Faults while publishing (issue 17, items 1 and 2): a full disk on the serving path, and a
SIGKILL at every step boundary and inside publish, leave one run's outputs (exports,
``exports/latest``, serving database, report), never a mix; only published runs appear in
the published history tables.

The children (tests/kill_child.py) run the ingest, marts and publish steps only, like
tests/integration/test_kill.py: the tables of the steps between are in the working
database from the last good run on the same inputs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.config import load_settings
from pipelines.publish import journal
from pipelines.publish import serving as publish
from tests.helpers import run_child_until
from tests.pipeline_steps import run_pipeline, write_sample_deliveries

AS_OF = date(2024, 10, 31)
PUBLISH_STEPS = ("ingest", "marts", "publish")
HISTORY = ("segment_summary", "kpi_monthly", "data_quality", "model_parameters", "model_metrics")


@pytest.fixture(scope="module")
def published_once(tmp_path_factory) -> Path:
    """A warehouse and its outputs after one good, published run as of AS_OF."""
    base = tmp_path_factory.mktemp("published")
    config = write_sample_deliveries(
        base, customers=120, seed=5, start=date(2023, 1, 1), end=date(2024, 12, 31), as_of=AS_OF
    )
    run_pipeline(config, AS_OF)
    return base


@pytest.fixture
def work(published_once, tmp_path) -> Path:
    directory = tmp_path / "work"
    shutil.copytree(published_once, directory, symlinks=True)
    return directory


# --- what the outputs hold ------------------------------------------------------------------


def outputs_state(work: Path) -> dict:
    """The run id each output holds and the bytes of each file."""
    export_dir = work / "exports" / AS_OF.isoformat()
    report = work / "reports" / AS_OF.isoformat() / "report.html"
    serving = work / "serving" / "crm.duckdb"
    con = duckdb.connect(str(serving), read_only=True)
    try:
        [(serving_run,)] = con.execute("select distinct run_id from marts.customer_360").fetchall()
        history = {
            t: {r for (r,) in con.execute(f"select distinct run_id from marts.{t}").fetchall()}
            for t in HISTORY
        }
    finally:
        con.close()
    html = report.read_text(encoding="utf-8")
    return {
        "exports_run": json.loads((export_dir / "manifest.json").read_text())["run_id"],
        "serving_run": serving_run,
        "report_run": next(
            run for run in history["data_quality"] | {serving_run} if f">{run}<" in html
        ),
        "latest": os.readlink(work / "exports" / "latest")
        if os.path.islink(work / "exports" / "latest")
        else None,
        "history": history,
        "bytes": {
            "serving": serving.read_bytes(),
            "report": report.read_bytes(),
            **{
                f"exports/{p.relative_to(export_dir)}": p.read_bytes()
                for p in sorted(export_dir.rglob("*"))
                if p.is_file()
            },
        },
    }


def published_runs(work: Path) -> list[str]:
    con = duckdb.connect(str(work / "wh" / "crm.duckdb"), read_only=True)
    try:
        return [
            r
            for (r,) in con.execute(
                "select run_id from audit.publications order by published_at"
            ).fetchall()
        ]
    finally:
        con.close()


def assert_one_published_run(work: Path) -> str:
    """Every output holds one run, the newest published; history only published runs."""
    state = outputs_state(work)
    runs = published_runs(work)
    assert state["exports_run"] == state["serving_run"] == state["report_run"] == runs[-1]
    assert state["latest"] == AS_OF.isoformat()
    for table, seen in state["history"].items():
        assert seen <= set(runs), f"marts.{table} holds unpublished runs {seen - set(runs)}"
    leftovers = [
        p.name
        for d in (work / "exports", work / "serving", work / "reports" / AS_OF.isoformat())
        for p in d.iterdir()
        if ".tmp-" in p.name or ".old-" in p.name
    ]
    assert leftovers == []
    assert_owner_only(work)
    return runs[-1]


def assert_owner_only(work: Path) -> None:
    """[permissions] by default: every file the run wrote 0600, every folder 0700."""
    export_dir = work / "exports" / AS_OF.isoformat()
    report_dir = work / "reports" / AS_OF.isoformat()
    modes = {
        str(p.relative_to(work)): stat.S_IMODE(p.stat().st_mode)
        for p in (
            work / "wh" / "crm.duckdb",
            work / "serving" / "crm.duckdb",
            *(p for p in export_dir.rglob("*") if p.is_file()),
            *(p for p in report_dir.rglob("*") if p.is_file()),
        )
    }
    assert modes == dict.fromkeys(modes, 0o600)
    folders = {
        str(p.relative_to(work)): stat.S_IMODE(p.stat().st_mode)
        for p in (
            work / "wh",
            work / "serving",
            work / "exports",
            export_dir,
            work / "reports",
            *(p for p in export_dir.rglob("*") if p.is_dir()),
            report_dir,
            *(p for p in report_dir.rglob("*") if p.is_dir()),
        )
    }
    assert modes and folders
    assert folders == dict.fromkeys(folders, 0o700)


# --- the tests --------------------------------------------------------------------------------


def test_a_full_disk_on_the_serving_path_publishes_nothing_and_says_so(work, monkeypatch):
    before = outputs_state(work)
    previous = published_runs(work)[-1]

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the write of the new serving database fails as on a full file system
    monkeypatch.setattr(publish, "_copy_schema", disk_full)
    with pytest.raises(journal.PublishError) as failure:
        run_pipeline(work / "crm.toml", AS_OF, PUBLISH_STEPS)
    message = str(failure.value)
    assert "Nothing was published by run" in message
    assert "serving database" in message and "No space left on device" in message
    assert f"stay those of run {previous}" in message
    assert outputs_state(work) == before  # exports, latest, serving, report: byte-identical
    assert published_runs(work)[-1] == previous
    assert not journal.journal_path(load_settings(work / "crm.toml")).exists()


@pytest.mark.parametrize(
    "pause_at",
    ["before:marts", "before:publish", "exports", "serving", "swap-serving"],
)
def test_a_kill_at_any_step_boundary_or_inside_publish_leaves_one_runs_outputs(work, pause_at):
    before = outputs_state(work)
    run_child_until(work, AS_OF, PUBLISH_STEPS, pause_at)
    settings = load_settings(work / "crm.toml")
    if pause_at == "swap-serving":
        # killed between two renames: the journal says what the next command completes
        pending = journal.pending_publish(settings)
        assert pending is not None and pending["run_id"] != before["exports_run"]
    else:
        assert outputs_state(work) == before, "a kill before the swaps changed an output"
    # the next command (a run that stops after ingest) first makes the outputs one run's
    run_pipeline(work / "crm.toml", AS_OF, ("ingest",))
    published = assert_one_published_run(work)
    if pause_at == "swap-serving":
        assert published == pending["run_id"]
    else:
        assert published == before["exports_run"]
    # and a whole run after it publishes its own outputs, with the published history only
    run_id = run_pipeline(work / "crm.toml", AS_OF, PUBLISH_STEPS)
    assert assert_one_published_run(work) == run_id


def test_group_readers_get_group_modes_and_the_configured_group(work):
    config = work / "crm.toml"
    config.write_text(
        config.read_text(encoding="utf-8")
        + '\n[permissions]\nreaders = "group"\ngroup = "users"\n',
        encoding="utf-8",
    )
    run_pipeline(config, AS_OF, PUBLISH_STEPS)
    import grp

    users = grp.getgrnam("users").gr_gid
    export_dir = work / "exports" / AS_OF.isoformat()
    for path in (
        work / "serving" / "crm.duckdb",
        *(p for p in export_dir.rglob("*") if p.is_file()),
        work / "wh" / "crm.duckdb",
    ):
        assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_gid) == (0o640, users), path
    for path in (export_dir, work / "reports" / AS_OF.isoformat()):
        assert (stat.S_IMODE(path.stat().st_mode), path.stat().st_gid) == (0o750, users), path
