"""Every per-customer SQL file the Dask runner runs per bucket (rfm, clv_summary,
clv_holdout, churn_features) gives, pooled over the buckets, exactly the table it gives on the whole
warehouse: the core tables are bucketed by the resolved customer (customer records too,
which are keyed by their source id). No cluster: the bucket tasks are called in process."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.config import load_settings
from pipelines.core.identity import identity_as_known_at
from pipelines.execution import buckets as bucket_files
from pipelines.execution import runner
from pipelines.execution.tasks import run_bucket_function, run_bucket_sql
from pipelines.scoring.churn import _build_labelled, churn_labelled_bucket
from pipelines.scoring.labelled import LabelledFrame
from pipelines.sqlrun import run_sql
from tests.helpers import run_to_core
from tests.pipeline_steps import write_sample_deliveries

AS_OF = date(2024, 10, 31)
BUCKETS = 5


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bucket-sql")
    config = write_sample_deliveries(
        directory, customers=300, seed=11, start=date(2023, 1, 1), end=AS_OF, as_of=AS_OF
    )
    with config.open("a", encoding="utf-8") as f:
        f.write(f'\n[execution]\nrunner = "dask"\nbuckets = {BUCKETS}\n')
    settings = load_settings(config)
    con = run_to_core(config)
    folders = bucket_files.write_buckets(con, settings, "r1")
    yield con, folders, directory, settings
    con.close()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("models/rfm", {"as_of": AS_OF}),
        (
            "models/clv_summary",
            {"as_of": AS_OF, "unit_days": 7, "period_days": 1, "resolution": "exact"},
        ),
        (
            "models/clv_holdout",
            {
                "calibration_end": date(2024, 7, 31),
                "as_of": AS_OF,
                "unit_days": 7,
                "period_days": 1,
                "resolution": "both",
            },
        ),
        ("models/churn_features", {"cutoff": AS_OF}),
        ("models/churn_features", {"cutoff": date(2024, 3, 31)}),
    ],
)
def test_pooled_buckets_equal_the_warehouse_table(warehouse, name, params):
    con, folders, directory, _ = warehouse
    run_sql(con, name, params)
    table = name.replace("/", ".")
    expected = con.sql(f"select * from {table}").pl()
    key = [c for c in ("customer_id", "resolution") if c in expected.columns]
    expected = expected.sort(key)
    out = directory / "out" / f"{table}-{min(v for v in params.values() if isinstance(v, date))}"
    results = [run_bucket_sql(name, params, b, folders, str(out)) for b in range(BUCKETS)]
    pooled = pl.concat([pl.read_parquet(r["path"]) for r in results]).sort(key)
    assert expected.height > 100
    assert_frame_equal(pooled, expected)
    for b, result in enumerate(results):
        ids = pl.read_parquet(result["path"])["customer_id"]
        assert all(bucket_files.bucket_of(c, BUCKETS) == b for c in ids)


def test_the_sample_has_what_the_bucketing_must_get_right(warehouse):
    """Merged records (a source id that is not the customer's id) with a profile, and
    events: without them the test above could not tell a wrong bucket key."""
    con, _, _, _ = warehouse
    [(merged, events)] = con.execute(
        """
        select
            (select count(*) from core.customer_records r
             join core.customer_map m on m.source_customer_id = r.customer_id
             where m.customer_id <> m.source_customer_id and r.country is not null),
            (select count(*) from core.events)
        """
    ).fetchall()
    assert merged > 0 and events > 0


def test_every_core_row_is_in_one_bucket(warehouse):
    con, folders, _, _ = warehouse
    for table, folder in folders.items():
        [(rows,)] = con.execute(f"select count(*) from core.{table}").fetchall()
        files = [bucket_files.bucket_files(folder, b) for b in range(BUCKETS)]
        reader = duckdb.connect()
        try:
            [(written,)] = reader.execute(
                "select count(*) from read_parquet($f, union_by_name = true)", {"f": files}
            ).fetchall()
        finally:
            reader.close()
        assert written == rows, table


@pytest.mark.parametrize("cutoff", [date(2024, 3, 31), date(2024, 5, 2)])
def test_pooled_labelled_frames_equal_those_of_the_identities_as_known(warehouse, cutoff):
    """The churn step's training frames on Dask: the core as known at the training date
    written as buckets (layer known_at), churn_labelled_bucket per bucket, pooled through
    into a LabelledFrame on the warehouse connection: exactly the frame _build_labelled
    gives there, column types included."""
    con, _, directory, settings = warehouse
    known_at = date(2024, 8, 1)
    run_sql(con, "models/churn_features", {"cutoff": AS_OF})  # defines churn_features_at
    with identity_as_known_at(con, known_at):
        expected = _build_labelled(con, cutoff, 90)
        folders = bucket_files.write_buckets(con, settings, "r1", layer="known_at")
        results = [
            run_bucket_function(
                churn_labelled_bucket,
                {"cutoff": cutoff, "horizon_days": 90},
                b,
                folders,
                str(directory / "out" / f"labelled-{cutoff}"),
            )
            for b in range(BUCKETS)
        ]
        with runner.bucket_rows(results) as (query, params):
            pooled = LabelledFrame.create(con, "pooled", query, params)
    assert set(folders) == set(bucket_files.KNOWN_AT_TABLES)
    assert expected.height > 100 and expected.labels().n_unique() == 2
    assert pooled.columns == expected.columns
    assert_frame_equal(pooled.select(), expected.select())
    pooled.drop()
    expected.drop()
