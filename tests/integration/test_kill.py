"""Runs killed with SIGKILL: the next run succeeds, nothing is duplicated, and BI users and
marketing never see a partial database or export file.

A child process (tests/kill_child.py) runs the pipeline's steps and pauses at a named
point inside a step (a hook in test code, so the kill lands exactly there); the test
sees the point reached (and the temporary file or directory it writes appear) and kills
the child with SIGKILL, then runs a normal run in this process.

The children killed while publishing run the ingest, marts and publish steps only: the
steps between (GX validation, CLV, churn) would add 15 s of imports per child, and their
tables are already in the working database from the last good run on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.runlog import format_latest_run
from tests.helpers import run_child_until
from tests.pipeline_steps import STEPS, run_pipeline, write_sample_deliveries

AS_OF = date(2024, 10, 31)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A warehouse, serving database and exports after one good run as of AS_OF; D+1's
    delivery waits in ``later/``."""
    base = tmp_path_factory.mktemp("good")
    config = write_sample_deliveries(
        base, customers=150, seed=3, start=date(2023, 1, 1), end=date(2024, 12, 31), as_of=AS_OF
    )
    run_pipeline(config, AS_OF)
    return base


@pytest.fixture
def work(good_run, tmp_path) -> Path:
    """A copy of the good run to kill runs in (paths in crm.toml are relative)."""
    directory = tmp_path / "work"
    shutil.copytree(good_run, directory, symlinks=True)
    return directory


# --- the child ----------------------------------------------------------------------------


# --- what must hold after a kill -----------------------------------------------------------


def assert_nothing_duplicated_or_lost(warehouse: Path) -> None:
    """raw holds each input row once (exactly the rows each file recorded in raw.files
    has), core holds each order, line, event and customer once, every file reconciles."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for source in ("transactions", "customers", "events"):
            per_file = con.execute(f"""
                select f.file_name, f.rows_read - f.rows_rejected, count(r._row_number),
                       count(distinct r._row_number)
                from raw.files f left join raw.{source} r on r._file_sha256 = f.file_sha256
                where f.source = '{source}' group by all""").fetchall()
            assert [r for r in per_file if not r[1] == r[2] == r[3]] == [], source
            orphans = con.execute(
                f"select count(*) from raw.{source} where _file_sha256 "
                "not in (select file_sha256 from raw.files)"
            ).fetchall()
            assert orphans == [(0,)], f"raw.{source} has rows of no recorded file"
        for table, key in (
            ("core.transaction_lines", "_file_sha256, _row_number"),
            ("core.transactions", "order_id"),
            ("core.events", "event_id"),
            ("core.customers", "customer_id"),
        ):
            rows, keys = con.execute(
                f"select count(*), count(distinct ({key})) from {table}"
            ).fetchall()[0]
            assert rows == keys > 0, table
        unbalanced = con.execute(
            "select file_path from audit.file_reconciliation where not is_balanced"
        ).fetchall()
        assert unbalanced == []
    finally:
        con.close()


def run_statuses(warehouse: Path) -> list[str]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return [
            s
            for (s,) in con.execute(
                "select status from audit.runs order by started_at, run_id"
            ).fetchall()
        ]
    finally:
        con.close()


def serving_state(path: Path) -> tuple[str, str, dict[str, int]]:
    """sha256 of the serving file, the run id it holds, and rows per marts table."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    con = duckdb.connect(str(path), read_only=True)
    try:
        [(run_id,)] = con.execute("select distinct run_id from marts.customer_360").fetchall()
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'marts'"
            ).fetchall()
        ]
        rows = {
            t: con.execute(f"select count(*) from marts.{t}").fetchall()[0][0]
            for t in sorted(tables)
        }
    finally:
        con.close()
    assert set(rows) >= {
        "customer_360",
        "segment_summary",
        "kpi_monthly",
        "data_quality",
        "model_parameters",
        "model_metrics",
    }
    return sha, run_id, rows


def hidden_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


class ExportWatcher:
    """Lists and reads ``exports/<as_of>/`` in a tight loop while a run is killed, the way
    a marketing tool would pick files up, and keeps what it saw."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.seen: list[tuple[list[str], dict[str, bytes], bool]] = []
        self.missing = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> ExportWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                self.missing += 1
                time.sleep(0.0005)
                continue
            try:
                names = sorted(os.listdir(fd))
                contents = {}
                for name in names:
                    try:
                        with open(
                            name, "rb", opener=lambda p, f, fd=fd: os.open(p, f, dir_fd=fd)
                        ) as fh:
                            contents[name] = fh.read()
                    except FileNotFoundError:
                        pass  # deleted since the listing: see `replaced` below
                    except IsADirectoryError:
                        pass  # marketing/: swapped in with its directory, like the files
                try:
                    replaced = os.stat(self.directory).st_ino != os.fstat(fd).st_ino
                except FileNotFoundError:
                    replaced = True
                self.seen.append((names, contents, replaced))
            finally:
                os.close(fd)
            time.sleep(0.0005)  # leave the child a core on a two-core machine

    def assert_only_whole_files_seen(self, expected: dict[str, bytes]) -> set[str]:
        """Every file read is byte-identical to its complete version (data files are the
        same in every run on these inputs; a manifest lists exactly the expected files);
        every listing of the directory that was not replaced meanwhile is complete.
        Returns the run ids of the manifests seen."""
        assert self.seen, "the watcher never listed the export directory"
        assert self.missing == 0, "the export directory was missing for a moment"
        files = json.loads(expected["manifest.json"])["files"]
        runs = set()
        for names, contents, replaced in self.seen:
            # a listing that raced with the swap read the old directory while it was
            # being deleted: some of its files may be gone, but none may be partial
            if not replaced:
                top_level = sorted({name.split("/")[0] for name in expected})
                assert names == top_level, f"partial directory listing: {names}"
            for name, data in contents.items():
                assert name in expected, f"unexpected file {name} in the export directory"
                if name == "manifest.json":
                    assert json.loads(data)["files"] == files, "a partial manifest was visible"
                    runs.add(json.loads(data)["run_id"])
                else:
                    assert data == expected[name], f"a partial {name} was visible"
        return runs


def export_contents(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# --- the tests ----------------------------------------------------------------------------


def test_runs_killed_while_ingesting_leave_no_row_twice_and_the_next_run_succeeds(work):
    for name in ("transactions_2.csv", "events_2.jsonl"):
        shutil.copy(work / "later" / name, work / name)
    # a line the fast JSON reader refuses: the row-by-row reader then reads the file in
    # chunks, each chunk one INSERT
    with open(work / "events_2.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"id": "broken\n')
    # killed after the fast reader inserted transactions_2.csv's rows ...
    run_child_until(work, AS_OF, tuple(STEPS), "ingest-fast")
    # ... and after the row-by-row reader inserted the first 50 rows of events_2.jsonl
    run_child_until(work, AS_OF, tuple(STEPS), "ingest-chunk")
    con = duckdb.connect(str(work / "wh" / "crm.duckdb"), read_only=True)
    committed = con.execute(
        "select count(*) from raw.events where _file_sha256 not in "
        "(select file_sha256 from raw.files)"
    ).fetchall()
    con.close()
    assert committed == [(50,)], "the kill was meant to land after a chunk was committed"

    run_pipeline(work / "crm.toml", AS_OF)
    assert_nothing_duplicated_or_lost(work / "wh" / "crm.duckdb")
    assert run_statuses(work / "wh" / "crm.duckdb")[-3:] == [
        "interrupted",
        "interrupted",
        "succeeded",
    ]


def test_runs_killed_while_publishing_leave_whole_outputs_and_the_next_run_succeeds(work):
    serving = work / "serving" / "crm.duckdb"
    exports_root = work / "exports"
    export_dir = exports_root / AS_OF.isoformat()
    complete = export_contents(export_dir)
    steps = ("ingest", "marts", "publish")
    # (pause point, the temporary file or directory being written there, relative to work)
    points = (
        ("exports", f"exports/.{AS_OF.isoformat()}.tmp-*"),
        ("serving", "serving/.crm.duckdb.tmp-*"),
    )
    for point, temporary in points:
        old_sha, old_run, old_rows = serving_state(serving)
        old_manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
        with ExportWatcher(export_dir) as watcher:
            run_child_until(work, AS_OF, steps, point, appears=temporary)
        runs_seen = watcher.assert_only_whole_files_seen(complete)

        # the serving database is the old file, whole (every kill is before the rename)
        assert serving_state(serving) == (old_sha, old_run, old_rows), point
        manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
        # killed while its outputs were being written beside their destinations: nothing
        # was swapped in, the old export directory stays (as the watcher saw throughout)
        assert manifest == old_manifest
        assert runs_seen == {old_manifest["run_id"]}
        assert export_contents(export_dir).keys() == complete.keys()
        assert list(work.glob(temporary)), f"{point}: the temporary output was not left"
        assert ": interrupted" in format_latest_run(str(work / "crm.toml"))

        run_id = run_pipeline(work / "crm.toml", AS_OF)
        sha, published_run, rows = serving_state(serving)
        assert published_run == run_id and rows.keys() == old_rows.keys(), point
        assert json.loads(export_contents(export_dir)["manifest.json"])["run_id"] == run_id
        assert {k: v for k, v in export_contents(export_dir).items() if k != "manifest.json"} == {
            k: v for k, v in complete.items() if k != "manifest.json"
        }
        assert hidden_leftovers(serving.parent) == [], point
        assert hidden_leftovers(exports_root) == [], point
        assert_nothing_duplicated_or_lost(work / "wh" / "crm.duckdb")
        statuses = run_statuses(work / "wh" / "crm.duckdb")
        assert statuses[-2:] == ["interrupted", "succeeded"], statuses
        assert "running" not in statuses
