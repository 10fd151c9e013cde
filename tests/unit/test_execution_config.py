"""[execution] (issue 13): validated like every section, errors name the key; the bucket
of a customer is the same in DuckDB's SQL and in Python, and spreads customers evenly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from pipelines.config import ConfigError, settings_from_dict
from pipelines.execution.buckets import bucket_of, bucket_sql, storage_root

BASE = {
    "sources": {
        "transactions": {
            "path": "tx*.csv",
            "format": "csv",
            "columns": {"customer_id": "c", "order_ts": "t", "amount": "a"},
        }
    }
}


def _settings(execution: dict, tmp_path: Path):
    return settings_from_dict(BASE | {"execution": execution}, base_dir=tmp_path)


def test_the_default_is_the_local_runner(tmp_path):
    e = settings_from_dict(BASE, base_dir=tmp_path).execution
    assert (e.runner, e.workers, e.address, e.buckets, e.storage) == ("local", 2, None, 16, None)


@pytest.mark.parametrize(
    ("execution", "named"),
    [
        ({"runner": "ray"}, "execution.runner"),
        ({"buckets": 0}, "execution.buckets"),
        ({"workers": "2"}, "execution.workers"),
        ({"address": "host:8786"}, "execution.address"),
        ({"storage": ""}, "execution.storage"),
        ({"bucket": 4}, "bucket"),
    ],
)
def test_a_bad_execution_key_is_named(execution, named, tmp_path):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        _settings(execution, tmp_path)


def test_storage_is_beside_the_warehouse_unless_set(tmp_path):
    default = _settings({"runner": "dask"}, tmp_path)
    assert storage_root(default) == str(default.warehouse.path.parent / "buckets")
    relative = _settings({"runner": "dask", "storage": "shared/b"}, tmp_path)
    assert storage_root(relative) == str((tmp_path / "shared" / "b").resolve())
    url = _settings({"runner": "dask", "storage": "s3://bucket/crm"}, tmp_path)
    assert storage_root(url) == "s3://bucket/crm"
    # a protocol with no fsspec implementation here is named before any work
    unknown = _settings({"runner": "dask", "storage": "nosuchfs://bucket/crm"}, tmp_path)
    with pytest.raises(ConfigError, match=r"execution\.storage .*nosuchfs://"):
        storage_root(unknown)


def test_the_sql_bucket_is_the_python_bucket_and_md5_based():
    ids = [f"c{i}" for i in range(2000)] + ["Ünïcode-ß", "", "a" * 100]
    con = duckdb.connect()
    try:
        con.execute("create table ids (customer_id varchar)")
        con.executemany("insert into ids values (?)", [(i,) for i in ids])
        sql = dict(
            con.execute(f"select customer_id, {bucket_sql('customer_id', 16)} from ids").fetchall()
        )
    finally:
        con.close()
    assert sql == {i: bucket_of(i, 16) for i in ids}
    # independent of the implementation: the first 15 hex digits of md5, as a number
    assert bucket_of("c1", 7) == int(hashlib.md5(b"c1").hexdigest()[:15], 16) % 7
    counts = [list(sql.values()).count(b) for b in range(16)]
    assert min(counts) > 2003 / 16 * 0.7, counts


def test_a_scheduler_address_where_none_answers_is_named_before_any_work(tmp_path, monkeypatch):
    import socket

    from pipelines.execution import runner

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    settings = _settings({"runner": "dask", "address": address}, tmp_path)
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_SECONDS", 2)
    with pytest.raises(ConfigError, match=r"execution\.address .*no Dask scheduler answered"):
        runner.scheduler_address(settings)
    assert address not in runner._answered
