"""[execution] storage = "s3://..." (issue 13): the bucket files go to an S3 API (moto's
server on localhost, a real HTTP S3 endpoint that s3fs talks to), the workers read and write
only there, and the run publishes exactly what the local runner publishes."""

from __future__ import annotations

import socket

import pytest

from tests.integration.test_dask_runner import _deliveries, _same_outputs
from tests.integration.test_determinism import run_and_collect

pytestmark = pytest.mark.flow

BUCKET = "crm-buckets"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """An S3 endpoint on localhost with an empty bucket; the AWS variables point s3fs (in
    this process and in the workers the run starts, which inherit them) at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from pipelines.execution import storage

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    storage.filesystem.cache_clear()
    try:
        yield client
    finally:
        storage.filesystem.cache_clear()
        server.stop()


def _keys(client, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_bucket_files_on_s3_give_what_the_local_runner_publishes(prefect_harness, s3, tmp_path):
    local = run_and_collect(_deliveries(tmp_path / "local", ""))
    # no address: the run starts its own LocalCluster, whose workers inherit the endpoint
    config = _deliveries(
        tmp_path / "s3",
        f'runner = "dask"\nbuckets = 4\nworkers = 2\nstorage = "s3://{BUCKET}/crm"',
    )
    on_s3 = run_and_collect(config)
    _same_outputs(local, on_s3)

    keys = _keys(s3, f"crm/run-{on_s3['run_id']}/")
    run = f"crm/run-{on_s3['run_id']}"
    for k in range(4):
        assert any(key.startswith(f"{run}/core/transactions/bucket={k}/") for key in keys), k
        assert f"{run}/out/rfm/bucket={k}.parquet" in keys
        assert f"{run}/out/clv_summary/bucket={k}.parquet" in keys
        # the churn step's: the core as known at its training date, its scores at as_of
        assert any(key.startswith(f"{run}/known_at/transactions/bucket={k}/") for key in keys), k
        assert f"{run}/out/churn_scores/bucket={k}.parquet" in keys
    # the BG/NBD scores at as_of, written by the flow process for the scoring tasks
    assert f"{run}/out/churn_bgnbd/_empty.parquet" in keys
    assert not [key for key in keys if ".tmp-" in key]
    # nothing of the buckets on the flow host: no local storage, no staging left behind
    warehouse_dir = tmp_path / "s3" / "wh"
    assert not (warehouse_dir / "buckets").exists()
    assert not (warehouse_dir / "buckets-staging").exists()

    # the next run removes this run's files (its work is done)
    again = run_and_collect(config)
    assert again["run_id"] != on_s3["run_id"]
    assert not _keys(s3, f"{run}/")
    assert _keys(s3, f"crm/run-{again['run_id']}/")
