"""Publishing the serving database and report files: atomic, never blocked by BI readers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from datetime import date

import duckdb
import pytest

from pipelines import files
from pipelines.config import load_settings
from pipelines.errors import ConfigError, StepError
from pipelines.publish import report
from pipelines.publish import serving as publish
from tests.helpers import TX_COLUMNS, write_config

QUERY = "select count(*), sum(hash(customer_id)) from marts.customer_360"


@pytest.fixture
def settings(tmp_path):
    body = f'[sources.transactions]\npath = "tx*.csv"\nformat = "csv"\n{TX_COLUMNS}'
    return load_settings(write_config(tmp_path, body))


@pytest.fixture
def con(settings):
    settings.warehouse.path.parent.mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(str(settings.warehouse.path))
    yield connection
    connection.close()


def plant(con, version: int) -> tuple[int, int]:
    """A marts.customer_360 that differs per version in rows and ids; returns QUERY's result."""
    con.execute("create schema if not exists marts")
    con.execute(f"""
        create or replace table marts.customer_360 as
        select 'v{version}-' || lpad(i::varchar, 6, '0') as customer_id,
               'c' || i || '@example.com' as email, i * 1.5 as predicted_clv
        from range({1000 + 500 * version}) t(i)""")
    con.execute("comment on table marts.customer_360 is 'One row per customer.'")
    con.execute(
        "comment on column marts.customer_360.predicted_clv is "
        "'CLV over the horizon, currency units; it''s discounted.'"
    )
    return tuple(con.execute(QUERY).fetchall()[0])


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


READER = """
import json, sys, time, duckdb
path, mode, out, ready, stop = sys.argv[1:6]
query = "select count(*), sum(hash(customer_id)) from marts.customer_360"
# held: a BI tool that keeps its connection; fresh: one that connects for every query.
held = duckdb.connect(path, read_only=True) if mode == "held" else None
with open(out, "w") as fh:
    first = True
    while True:
        try:
            if held is not None:
                row = held.execute(query).fetchall()[0]
            else:
                c = duckdb.connect(path, read_only=True)
                row = c.execute(query).fetchall()[0]
                c.close()
            fh.write(json.dumps({"row": list(row)}) + "\\n")
        except Exception as exc:
            fh.write(json.dumps({"error": repr(exc)}) + "\\n")
        fh.flush()
        if first:
            open(ready, "w").close()
            first = False
        try:
            open(stop).close()
            break
        except FileNotFoundError:
            pass
"""


def test_bi_readers_never_block_a_publish_and_see_whole_versions(tmp_path, settings, con):
    v1 = plant(con, 1)
    serving = publish.publish_serving_database(con, settings, "run-1")
    v2 = plant(con, 2)
    assert v1 != v2
    stop = tmp_path / "stop"
    readers = {}
    for mode in ("held", "fresh"):
        out, ready = tmp_path / f"{mode}.jsonl", tmp_path / f"{mode}.ready"
        readers[mode] = (
            subprocess.Popen(
                [sys.executable, "-c", READER, str(serving), mode, str(out), str(ready), str(stop)]
            ),
            out,
            ready,
        )
    try:
        deadline = time.monotonic() + 60
        while not all(ready.exists() for _, _, ready in readers.values()):
            assert all(p.poll() is None for p, _, _ in readers.values()), "a reader died"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        durations = []
        for i in range(12):
            plant(con, 2 if i % 2 == 0 else 1)
            start = time.monotonic()
            publish.publish_serving_database(con, settings, f"run-{i + 2}")
            durations.append(time.monotonic() - start)
            time.sleep(0.05)
    finally:
        stop.touch()
        for process, _, _ in readers.values():
            process.wait(timeout=60)
    reads = {
        mode: [json.loads(line) for line in out.read_text().splitlines()]
        for mode, (_, out, _) in readers.items()
    }
    assert [r for rs in reads.values() for r in rs if "error" in r] == []
    seen = {mode: {tuple(r["row"]) for r in rs} for mode, rs in reads.items()}
    # the connection held across publishes keeps reading the file it opened
    assert seen["held"] == {v1}
    # connections opened during the publishes saw both versions, each whole, nothing else
    assert seen["fresh"] == {v1, v2}, "a reader saw a mix of two versions"
    assert len(reads["fresh"]) > 12
    assert max(durations) < 10, durations
    assert not list(serving.parent.glob(".*tmp-*"))


def test_a_process_holding_a_connection_gets_the_old_file_for_new_connections_too(settings, con):
    """DuckDB caches one database instance per path and process: BI tools must close every
    connection (or restart their pool) to see a new publish."""
    v1 = plant(con, 1)
    serving = publish.publish_serving_database(con, settings, "run-1")
    held = duckdb.connect(str(serving), read_only=True)
    v2 = plant(con, 2)
    publish.publish_serving_database(con, settings, "run-2")
    again = duckdb.connect(str(serving), read_only=True)
    assert tuple(again.execute(QUERY).fetchall()[0]) == v1
    again.close()
    held.close()
    fresh = duckdb.connect(str(serving), read_only=True)
    assert tuple(fresh.execute(QUERY).fetchall()[0]) == v2
    fresh.close()


def test_a_reader_connecting_after_a_publish_sees_the_new_data(settings, con):
    plant(con, 1)
    serving = publish.publish_serving_database(con, settings, "run-1")
    v2 = plant(con, 2)
    publish.publish_serving_database(con, settings, "run-2")
    result = run_python(
        """
        import sys, duckdb
        c = duckdb.connect(sys.argv[1], read_only=True)
        print(list(c.execute(sys.argv[2]).fetchall()[0]))""",
        str(serving),
        QUERY,
    )
    assert result.returncode == 0, result.stderr
    assert tuple(json.loads(result.stdout)) == v2


def test_duckdb_lets_many_readers_but_no_writer_beside_them(settings, con):
    """Why we never write into the serving file: a BI reader's lock would stop us."""
    plant(con, 1)
    serving = publish.publish_serving_database(con, settings, "run-1")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb, time; c = duckdb.connect(sys.argv[1], "
            "read_only=True); print('open', flush=True); time.sleep(60)",
            str(serving),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        second_reader = run_python(
            """
            import sys, duckdb
            print(duckdb.connect(sys.argv[1], read_only=True).execute(
                "select count(*) from marts.customer_360").fetchall()[0][0])""",
            str(serving),
        )
        assert second_reader.returncode == 0, second_reader.stderr
        writer = run_python(
            """
            import sys, duckdb
            duckdb.connect(sys.argv[1])""",
            str(serving),
        )
        assert writer.returncode != 0 and "lock" in writer.stderr.lower()
        # ... while a publish beside the reader goes through
        v2 = plant(con, 2)
        publish.publish_serving_database(con, settings, "run-2")
    finally:
        holder.kill()
        holder.wait()
    check = duckdb.connect(str(serving), read_only=True)
    assert tuple(check.execute(QUERY).fetchall()[0]) == v2
    check.close()


def test_a_writer_holding_a_file_keeps_readers_out(tmp_path):
    path = tmp_path / "held.duckdb"
    duckdb.connect(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb, time; c = duckdb.connect(sys.argv[1]); "
            "print('open', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        reader = run_python(
            """
            import sys, duckdb
            duckdb.connect(sys.argv[1], read_only=True)""",
            str(path),
        )
        assert reader.returncode != 0 and "lock" in reader.stderr.lower()
    finally:
        holder.kill()
        holder.wait()


def test_serving_database_holds_only_marts_with_comments_and_views(settings, con):
    con.execute("create schema core")
    con.execute("create table core.secret as select 'not for BI' as x")
    plant(con, 1)
    con.execute(
        "create view marts.big_spenders as "
        "select * from marts.customer_360 where predicted_clv > 1000"
    )
    con.execute("comment on view marts.big_spenders is 'Customers above 1000.'")
    serving = publish.publish_serving_database(con, settings, "run-1")
    check = duckdb.connect(str(serving), read_only=True)
    try:
        tables = check.execute(
            "select schema_name, table_name, comment from duckdb_tables()"
        ).fetchall()
        assert tables == [("marts", "customer_360", "One row per customer.")]
        assert check.execute(
            "select column_name, comment from duckdb_columns() where comment is not null"
        ).fetchall() == [
            ("predicted_clv", "CLV over the horizon, currency units; it's discounted.")
        ]
        assert check.execute("select count(*) from marts.big_spenders").fetchall()[0][0] == 833
        assert check.execute(
            "select comment from duckdb_views() where view_name = 'big_spenders'"
        ).fetchall() == [("Customers above 1000.",)]
        assert check.execute(
            "select tags['storage_version'] from duckdb_databases() where not internal"
        ).fetchall() == [("v1.0.0+",)]
    finally:
        check.close()
    assert con.execute("select current_database(), current_schema()").fetchall() == [
        ("crm", "main")
    ]


def test_nothing_to_publish_leaves_the_serving_database_alone(settings, con):
    serving = settings.warehouse.serving_path
    serving.parent.mkdir(parents=True)
    serving.write_bytes(b"the last good database")
    with pytest.raises(StepError, match="nothing to publish"):
        publish.publish_serving_database(con, settings, "run-1")
    assert serving.read_bytes() == b"the last good database"


def test_a_failed_copy_keeps_the_old_database_and_leaves_no_temporary_file(
    settings, con, monkeypatch
):
    v1 = plant(con, 1)
    serving = publish.publish_serving_database(con, settings, "run-1")
    before = serving.read_bytes()
    plant(con, 2)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(publish, "_copy_schema", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        publish.publish_serving_database(con, settings, "run-2")
    assert serving.read_bytes() == before
    assert sorted(p.name for p in serving.parent.iterdir()) == [serving.name]
    check = duckdb.connect(str(serving), read_only=True)
    assert tuple(check.execute(QUERY).fetchall()[0]) == v1
    check.close()


def test_leftovers_of_a_crashed_publish_are_removed(settings, con):
    serving = settings.warehouse.serving_path
    serving.parent.mkdir(parents=True)
    stale = serving.with_name(f".{serving.name}.tmp-crashed-run")
    stale.write_bytes(b"half a database")
    stale.with_name(stale.name + ".wal").write_bytes(b"wal")
    plant(con, 1)
    publish.publish_serving_database(con, settings, "run-2")
    assert sorted(p.name for p in serving.parent.iterdir()) == [serving.name]


def test_publish_file_atomically_replaces_the_report(tmp_path, settings):
    dest = report.report_path(settings, date(2025, 12, 31))
    assert dest == tmp_path / "reports" / "2025-12-31" / "report.html"
    tmp = files.temp_path_for(dest, "run-1")
    assert tmp.parent == dest.parent and tmp.name.startswith(".")
    tmp.write_text("<html>old</html>")
    files.publish_file_atomically(tmp, dest)
    old_reader = dest.open()  # a reader with the old file open keeps it whole
    tmp = files.temp_path_for(dest, "run-2")
    tmp.write_text("<html>new</html>")
    files.publish_file_atomically(tmp, dest)
    assert old_reader.read() == "<html>old</html>"
    old_reader.close()
    assert dest.read_text() == "<html>new</html>"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["report.html"]
    with pytest.raises(StepError, match="does not exist"):
        files.publish_file_atomically(tmp, dest)


def test_report_path_is_validated_and_relative_to_the_config(tmp_path):
    body = (
        f'[sources.transactions]\npath = "tx*.csv"\n{TX_COLUMNS}\n[report]\npath = "out/reports"\n'
    )
    settings = load_settings(write_config(tmp_path, body))
    assert settings.report.path == tmp_path / "out" / "reports"
    assert (
        report.report_path(settings, date(2025, 12, 31))
        == tmp_path / "out" / "reports" / "2025-12-31" / "report.html"
    )
    (tmp_path / "bad").mkdir()
    with pytest.raises(ConfigError, match="report.path"):  # on load, before any step runs
        load_settings(write_config(tmp_path / "bad", body.replace('"out/reports"', "5")))


def test_temp_names_are_safe_file_names(tmp_path):
    tmp = files.temp_path_for(tmp_path / "x" / "crm.duckdb", "../../etc/passwd run")
    assert tmp.parent == tmp_path / "x"
    assert "/" not in tmp.name and " " not in tmp.name
    assert os.path.isdir(tmp_path / "x")


def test_a_publish_keeps_the_permissions_an_administrator_set(settings, con):
    plant(con, 1)
    serving = publish.publish_serving_database(con, settings, "run-1")
    os.chmod(serving, 0o640)
    plant(con, 2)
    publish.publish_serving_database(con, settings, "run-2")
    assert stat.S_IMODE(serving.stat().st_mode) == 0o640
    report_file = report.report_path(settings, date(2025, 12, 31))
    tmp = files.temp_path_for(report_file, "run-1")
    tmp.write_text("old")
    files.publish_file_atomically(tmp, report_file)
    os.chmod(report_file, 0o600)
    tmp = files.temp_path_for(report_file, "run-2")
    tmp.write_text("new")
    files.publish_file_atomically(tmp, report_file)
    assert stat.S_IMODE(report_file.stat().st_mode) == 0o600
