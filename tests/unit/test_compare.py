"""pipelines.sample.compare: what two runs published, compared without their run ids."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_settings
from pipelines.sample.compare import compare_published
from pipelines.sample.deliveries import write_deliveries_config

CUSTOMERS = [("c1", 10.5, "2024-03-01"), ("c2", None, "2024-03-01")]
KPI = [("2024-02-01", 3), ("2024-03-01", 1)]
LIST_ROWS = [("c1", "a@x.org", 10.5)]


def _publish(
    root: Path,
    runs: list[str],
    customers=CUSTOMERS,
    kpi=KPI,
    list_rows=LIST_ROWS,
    as_of_dirs=("2024-03-01",),
) -> Path:
    """A config whose serving database and exports look like the pipeline's: marts with
    run ids (``runs``: earlier runs first; the history mart keeps a copy of ``kpi`` per
    run, the last run's as given), and one export directory per ``as_of_dirs``."""
    config = write_deliveries_config(root)
    settings = load_settings(config)
    settings.warehouse.serving_path.parent.mkdir(parents=True)
    con = duckdb.connect(str(settings.warehouse.serving_path))
    con.execute("create schema marts")
    con.execute(
        "create table marts.customer_360 (customer_id varchar, predicted_clv double, "
        "as_of date, run_id varchar)"
    )
    con.executemany(
        "insert into marts.customer_360 values (?, ?, ?, ?)", [(*r, runs[-1]) for r in customers]
    )
    con.execute("create table marts.kpi_monthly (run_id varchar, month date, orders integer)")
    for run in runs:
        rows = kpi if run == runs[-1] else [(m, n + 100) for m, n in KPI]
        con.executemany("insert into marts.kpi_monthly values (?, ?, ?)", [(run, *r) for r in rows])
    con.close()
    for as_of in as_of_dirs:
        directory = settings.exports.path / as_of
        directory.mkdir(parents=True)
        (directory / "list_vip_care.csv").write_text(
            "customer_id,email,predicted_clv\n"
            + "".join(f"{c},{e},{v:.2f}\n" for c, e, v in list_rows),
            encoding="utf-8",
        )
        table = pa.table(
            {
                "customer_id": [r[0] for r in list_rows],
                "email": [r[1] for r in list_rows],
                "predicted_clv": [r[2] for r in list_rows],
            }
        )
        pq.write_table(table, directory / "list_vip_care.parquet")
        manifest = {
            "as_of": as_of,
            "run_id": runs[-1],
            "files": [
                {"name": "list_vip_care.csv", "rows": len(list_rows), "columns": table.column_names}
            ],
        }
        (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return config


def test_the_same_outputs_of_other_runs_are_equal(tmp_path):
    # A ran daily: an older run's rows in the history mart and an older export directory
    daily = _publish(
        tmp_path / "a",
        ["20240301T060000-aaaa", "20240302T060000-bbbb"],
        as_of_dirs=("2024-02-29", "2024-03-01"),
    )
    refresh = _publish(tmp_path / "b", ["20240305T060000-cccc"])

    assert compare_published(daily, refresh) == []


def test_a_changed_value_names_the_table_and_counts_the_rows(tmp_path):
    a = _publish(tmp_path / "a", ["r1"])
    b = _publish(tmp_path / "b", ["r2"], customers=[("c1", 10.5000001, "2024-03-01"), CUSTOMERS[1]])

    diffs = compare_published(a, b)

    assert len(diffs) == 1
    assert diffs[0].startswith("marts.customer_360: 1 rows only in A, 1 only in B (of 2 and 2)")
    assert "10.5000001" in diffs[0]


def test_rows_are_compared_as_a_multiset(tmp_path):
    a = _publish(tmp_path / "a", ["r1"], customers=[*CUSTOMERS, CUSTOMERS[0]])
    b = _publish(tmp_path / "b", ["r2"])

    assert compare_published(a, b) == [
        "marts.customer_360: 1 rows only in A, 0 only in B (of 3 and 2); e.g. A: "
        "{'customer_id': 'c1', 'predicted_clv': 10.5, 'as_of': datetime.date(2024, 3, 1)}"
    ]


def test_history_marts_compare_the_latest_run_only(tmp_path):
    refresh = _publish(tmp_path / "b", ["r9"])
    # the latest run differs: reported
    changed = _publish(tmp_path / "a", ["r1", "r2"], kpi=[KPI[0], ("2024-03-01", 2)])
    diffs = compare_published(changed, refresh)
    assert [d.split(":")[0] for d in diffs] == ["marts.kpi_monthly"]
    assert "1 rows only in A, 1 only in B (of 2 and 2)" in diffs[0]


def test_missing_tables_and_columns_are_reported(tmp_path):
    a = _publish(tmp_path / "a", ["r1"])
    b = _publish(tmp_path / "b", ["r2"])
    con = duckdb.connect(str(load_settings(b).warehouse.serving_path))
    con.execute("drop table marts.kpi_monthly")
    con.execute("alter table marts.customer_360 add column churn_band varchar")
    con.close()

    assert compare_published(a, b) == [
        "marts.kpi_monthly: only in A",
        "marts.customer_360: columns differ: only in A [], only in B ['churn_band']",
    ]


def test_export_files_are_compared_by_content_and_the_manifest_without_run_ids(tmp_path):
    a = _publish(tmp_path / "a", ["r1"])
    b = _publish(tmp_path / "b", ["r2"], list_rows=[("c1", "a@x.org", 10.25)])
    exports_b = load_settings(b).exports.path / "2024-03-01"
    (exports_b / "extra.csv").write_text("customer_id\n", encoding="utf-8")

    diffs = compare_published(a, b)

    assert [d.split(":")[0] for d in diffs] == [
        "exports/2024-03-01/extra.csv",
        "exports/2024-03-01/list_vip_care.csv",
        "exports/2024-03-01/list_vip_care.parquet",
    ]
    assert diffs[0].endswith("only in B")
    assert "1 rows only in A, 1 only in B (of 1 and 1)" in diffs[1]
    assert "10.25" in diffs[1] and "10.25" in diffs[2]


def test_a_manifest_that_differs_in_more_than_its_run_id_is_reported(tmp_path):
    a = _publish(tmp_path / "a", ["r1"])
    b = _publish(tmp_path / "b", ["r2"])
    path = load_settings(b).exports.path / "2024-03-01" / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"][0]["rows"] = 7
    path.write_text(json.dumps(manifest), encoding="utf-8")

    assert compare_published(a, b) == [
        "exports/2024-03-01/manifest.json: differs in files "
        "(file entries differ: list_vip_care.csv)"
    ]


def test_other_latest_export_directories_are_reported(tmp_path):
    a = _publish(tmp_path / "a", ["r1"], as_of_dirs=("2024-03-01", "2024-03-02"))
    b = _publish(tmp_path / "b", ["r2"])

    assert compare_published(a, b) == [
        "exports: latest as_of directory 2024-03-02 in A, 2024-03-01 in B"
    ]


def test_a_missing_serving_database_is_reported(tmp_path):
    a = _publish(tmp_path / "a", ["r1"])
    b = write_deliveries_config(tmp_path / "b")

    diffs = compare_published(a, b)

    assert len(diffs) == 2
    assert diffs[0].startswith("serving database ") and diffs[0].endswith("does not exist")
    assert diffs[1] == "exports: no <as_of> directory in B, 2024-03-01 in A"


@pytest.mark.parametrize("ignored", ["published_at", "generated_at"])
def test_publish_timestamps_may_differ(tmp_path, ignored):
    a = _publish(tmp_path / "a", ["r1"])
    b = _publish(tmp_path / "b", ["r2"])
    for config, stamp in ((a, "2024-03-01 06:00:00"), (b, "2024-03-05 06:00:00")):
        con = duckdb.connect(str(load_settings(config).warehouse.serving_path))
        con.execute(f"alter table marts.customer_360 add column {ignored} timestamp")
        con.execute(f"update marts.customer_360 set {ignored} = ?", [stamp])
        con.close()

    assert compare_published(a, b) == []


def test_the_id_change_log_is_left_out_and_every_other_mart_compared(tmp_path):
    a = _publish(tmp_path / "a", ["r1", "r2"])
    b = _publish(tmp_path / "b", ["r9"])
    for config, changes in ((a, [("r2", "c7", "c1")]), (b, [])):
        con = duckdb.connect(str(load_settings(config).warehouse.serving_path))
        con.execute(
            "create table marts.customer_id_changes (run_id varchar, "
            "previous_customer_id varchar, customer_id varchar)"
        )
        if changes:
            con.executemany("insert into marts.customer_id_changes values (?, ?, ?)", changes)
        con.close()
    # daily runs log the merge they saw; a full refresh from scratch has nothing to log
    assert compare_published(a, b) == []
    c = _publish(tmp_path / "c", ["r9"], kpi=[("2024-02-01", 3), ("2024-03-01", 2)])
    con = duckdb.connect(str(load_settings(c).warehouse.serving_path))
    con.execute(
        "create table marts.customer_id_changes (run_id varchar, previous_customer_id varchar, "
        "customer_id varchar)"
    )
    con.close()
    assert [d.split(":")[0] for d in compare_published(a, c)] == ["marts.kpi_monthly"]
