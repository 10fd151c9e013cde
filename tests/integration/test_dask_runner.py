"""[execution] runner = "dask" (issue 13): the per-customer work (the RFM, CLV summary,
holdout and churn feature SQL, the churn training frames; the CLV interval and the churn
scores in Python) per customer bucket on Dask workers publishes exactly what the local
runner publishes, and no worker opens the warehouse."""

from __future__ import annotations

import os
import signal
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


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The published outputs of the local runner, which every Dask run must equal."""
    directory = tmp_path_factory.mktemp("dask") / "local"
    return directory, run_and_collect(_deliveries(directory, ""))


def _same_outputs(expected: dict, actual: dict) -> None:
    assert actual["tables"].keys() == expected["tables"].keys()
    for table, rows in expected["tables"].items():
        assert_same_rows(table, rows, actual["tables"][table])
    assert actual["exports"] == expected["exports"]


def test_dask_runner_with_1_and_16_buckets_publishes_what_the_local_runner_does(
    prefect_harness, cluster, local_run, tmp_path
):
    local_cluster, client = cluster
    local_dir, local = local_run

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
        _same_outputs(local, other)

    # the 16-bucket run's stages ran on the test's cluster's workers, not in this process
    stages = runner.STAGE_TIMES.stages[stages_before:]
    names = [s["stage"] for s in stages]
    assert names[:5] + names[7:] == [
        "models/rfm",
        "models/clv_summary",
        "models/clv_holdout",
        "models/clv_interval",
        "models/churn_features",
        "models/churn_scores",
    ]
    # the training frames at the two validation cutoffs, from the identities as known then
    assert [name.rsplit("_", 1)[0] for name in names[5:7]] == ["models/churn_labelled"] * 2
    assert all(s["buckets"] == 16 for s in stages)
    ran_on = {pid for s in stages for pid in s["worker_pids"]}
    assert ran_on <= set(worker_pids) and os.getpid() not in ran_on
    assert not seen, f"a worker opened the warehouse: {sorted(seen)}"

    runs = {
        name: _audit(directory, "select runner, buckets from audit.runs")
        for name, directory in (
            ("local", local_dir),
            ("one", tmp_path / "one"),
            ("sixteen", tmp_path / "sixteen"),
        )
    }
    assert runs == {"local": [("local", None)], "one": [("dask", 1)], "sixteen": [("dask", 16)]}


def _audit(directory: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(directory / "wh" / "crm.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _kill_a_worker_when(pattern: str, root: Path, pids: list[int], killed: list, stop):
    # SIGKILL one worker process as soon as the first bucket file of the stage appears:
    # the stage's other buckets are then still to run, or running on it
    while not stop.is_set():
        if any(root.glob(pattern)):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
            return
        time.sleep(0.002)


def test_a_worker_killed_during_a_bucket_stage_leaves_correct_results_or_nothing_published(
    prefect_harness, cluster, local_run, tmp_path
):
    local_cluster, client = cluster
    _, local = local_run
    pids = sorted(client.run(os.getpid).values())
    config = _deliveries(
        tmp_path, f'runner = "dask"\nbuckets = 16\naddress = "{local_cluster.scheduler_address}"'
    )
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(
        target=_kill_a_worker_when,
        args=("wh/buckets/run-*/out/rfm/bucket=*.parquet", tmp_path, pids, killed, stop),
        daemon=True,
    )
    killer.start()
    try:
        first = run_and_collect(config)
    except Exception:
        first = None
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed: the stage ended before its first bucket file"
    if first is not None:
        # the dead worker's tasks ran again elsewhere (idempotent bucket files)
        _same_outputs(local, first)
    else:
        assert _audit(tmp_path, "select count(*) from audit.publications") == [(0,)]
        assert not (tmp_path / "exports" / AS_OF.isoformat()).exists()
    # the nanny restarts the worker; the next run is green and right either way
    client.wait_for_workers(2, timeout=60)
    _same_outputs(local, run_and_collect(config))


def test_the_flow_runs_its_bucket_stages_on_dask(prefect_harness, cluster, tmp_path):
    # under crm_pipeline the bucket flow is called from inside the value task, whose
    # run context (holding the warehouse connection) must not travel to the workers
    from flows import crm_pipeline
    from tests.integration.test_flow import sample_config

    local_cluster, _ = cluster
    config = sample_config(tmp_path)
    with config.open("a", encoding="utf-8") as f:
        f.write(
            f'\n[execution]\nrunner = "dask"\nbuckets = 4\n'
            f'address = "{local_cluster.scheduler_address}"\n'
        )
    text = crm_pipeline(config_path=str(config))
    assert "ran on      Dask workers (prefect-dask): the per-customer SQL in 4 customer" in text
    assert _audit(tmp_path, "select status, runner, buckets from audit.runs") == [
        ("succeeded", "dask", 4)
    ]
