"""[execution] runner = "dask" (issue 13): the per-customer SQL per customer bucket on Dask
workers publishes exactly what the local runner publishes, and no worker opens the
warehouse."""

from __future__ import annotations

import os
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.execution import runner
from tests.integration.test_determinism import AS_OF, assert_same_rows, run_and_collect
from tests.pipeline_steps import write_sample_deliveries

pytestmark = pytest.mark.flow


def _deliveries(directory: Path, execution: str) -> Path:
    config = write_sample_deliveries(
        directory,
        customers=300,
        seed=7,
        start=date(2023, 1, 1),
        end=date(2024, 12, 31),
        as_of=AS_OF,
    )
    with config.open("a", encoding="utf-8") as f:
        f.write(f"\n[execution]\n{execution}\n")
    return config


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="3GiB",
            # no fixed port: the HTTP (metrics) server binds any free one, so another
            # cluster on this host (8787 taken) is no error
            dashboard_address=":0",
        ) as local,
        Client(local) as client,
    ):
        yield local, client


def _watch_open_files(pids: list[int], needle: str, seen: set[str], stop: threading.Event):
    # what each worker process has open, every 20 ms, while the run goes on
    while not stop.is_set():
        for pid in pids:
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    except OSError:
                        continue
                    if needle in target:
                        seen.add(f"{pid}: {target}")
            except OSError:
                pass
        time.sleep(0.02)


def test_dask_runner_with_1_and_16_buckets_publishes_what_the_local_runner_does(
    prefect_harness, cluster, tmp_path
):
    local_cluster, client = cluster
    local = run_and_collect(_deliveries(tmp_path / "local", ""))

    one = run_and_collect(
        _deliveries(tmp_path / "one", 'runner = "dask"\nbuckets = 1\nworkers = 2')
    )
    stages_before = len(runner.STAGE_TIMES.stages)
    worker_pids = sorted(client.run(os.getpid).values())
    seen: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch_open_files, args=(worker_pids, "crm.duckdb", seen, stop), daemon=True
    )
    watcher.start()
    try:
        config16 = _deliveries(
            tmp_path / "sixteen",
            f'runner = "dask"\nbuckets = 16\naddress = "{local_cluster.scheduler_address}"',
        )
        sixteen = run_and_collect(config16)
    finally:
        stop.set()
        watcher.join()

    for other in (one, sixteen):
        assert other["tables"].keys() == local["tables"].keys()
        for table, rows in local["tables"].items():
            assert_same_rows(table, rows, other["tables"][table])
        assert other["exports"] == local["exports"]

    # the 16-bucket run's stages ran on the test's cluster's workers, not in this process
    stages = runner.STAGE_TIMES.stages[stages_before:]
    assert [s["stage"] for s in stages] == ["models/rfm", "models/clv_summary"]
    assert all(s["buckets"] == 16 for s in stages)
    ran_on = {pid for s in stages for pid in s["worker_pids"]}
    assert ran_on <= set(worker_pids) and os.getpid() not in ran_on
    assert not seen, f"a worker opened the warehouse: {sorted(seen)}"

    runs = {}
    for name in ("local", "one", "sixteen"):
        con = duckdb.connect(str(tmp_path / name / "wh" / "crm.duckdb"), read_only=True)
        try:
            runs[name] = con.execute("select runner, buckets from audit.runs").fetchall()
        finally:
            con.close()
    assert runs == {"local": [("local", None)], "one": [("dask", 1)], "sixteen": [("dask", 16)]}
