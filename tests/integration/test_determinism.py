"""Same inputs, same outputs: a rerun as of D, and a rerun as of D after D+1's delivery
arrived, publish the same tables and export files, run metadata aside.

Run metadata is ``run_id`` (the history tables keep every run; only the latest run's rows
are compared) and ``manifest.json``'s run id. ``marts.data_quality`` describes the inputs
of the run (every file ingested so far and how its rows were accounted for), so after
D+1's delivery it rightly lists the new files too: there, only its rows about D's files
must be unchanged. ``marts.customer_360``'s profile fields are the latest known (see
README, "Scheduling", on reruns), so this test delivers D+1's transactions and events only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from pipelines.marts import GRAINS
from pipelines.sqlrun import run_sql
from tests.helpers import run_to_core, write_config
from tests.pipeline_steps import run_pipeline, write_sample_deliveries

AS_OF = date(2024, 10, 31)
# Columns that say which run wrote a row, not what the data is.
RUN_METADATA = frozenset({"run_id", "started_at", "ended_at", "generated_at"})


def published_tables(serving: Path) -> dict[str, list[tuple]]:
    """Every marts table of the serving database: the publishing run's rows without run
    metadata, ordered by the table's key."""
    con = duckdb.connect(str(serving), read_only=True)
    try:
        [(run_id,)] = con.execute("select distinct run_id from marts.customer_360").fetchall()
        tables = {}
        for (table,) in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'marts' order by 1"
        ).fetchall():
            columns = [
                c
                for (c,) in con.execute(
                    "select column_name from duckdb_columns() where schema_name = 'marts' "
                    "and table_name = ? order by column_index",
                    [table],
                ).fetchall()
            ]
            if table == "customer_360":
                key, where = ("customer_id",), ""
            else:
                assert table in GRAINS, f"marts.{table} is new: name its key in marts.GRAINS"
                key, where = GRAINS[table], "where run_id = $run_id"
            kept = ", ".join(f'"{c}"' for c in columns if c not in RUN_METADATA)
            order = ", ".join(f'"{c}"' for c in key)
            # the first row names the columns
            tables[table] = [tuple(c for c in columns if c not in RUN_METADATA)]
            tables[table] += con.execute(
                f"select {kept} from marts.{table} {where} order by {order} nulls first",
                {"run_id": run_id} if where else {},
            ).fetchall()
        return tables
    finally:
        con.close()


def digest(rows: list[tuple]) -> str:
    # repr() of a float round-trips exactly, so equal digests mean equal bits
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def export_files(directory: Path) -> dict[str, str]:
    """sha256 per data file, plus the manifest's file entries (its run id aside)."""
    # the marketing/ folder's files too, by their path in the directory
    files = {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    files["manifest.json"] = json.dumps(
        {"as_of": manifest["as_of"], "files": manifest["files"]}, sort_keys=True
    )
    return files


def run_and_collect(config: Path) -> dict:
    run_id = run_pipeline(config, AS_OF, write_report=False)  # the report is not compared
    base = config.parent
    tables = published_tables(base / "serving" / "crm.duckdb")
    assert tables["customer_360"][1:], "nothing was published"
    return {
        "run_id": run_id,
        "tables": tables,
        "exports": export_files(base / "exports" / AS_OF.isoformat()),
    }


def assert_same_rows(table: str, expected: list[tuple], actual: list[tuple]) -> None:
    if digest(expected) == digest(actual):
        return
    columns, before, after = expected[0], set(expected[1:]), set(actual[1:])
    gone = [r for r in expected[1:] if r not in after][:3]
    new = [r for r in actual[1:] if r not in before][:3]
    raise AssertionError(
        f"marts.{table} changed ({len(expected) - 1} -> {len(actual) - 1} rows).\n"
        f"columns {columns}\nfirst rows only before: {gone}\nfirst rows only after: {new}"
    )


def test_rerun_and_next_days_delivery_leave_every_published_output_of_as_of_unchanged(tmp_path):
    config = write_sample_deliveries(
        tmp_path, customers=600, seed=7, start=date(2023, 1, 1), end=date(2024, 12, 31), as_of=AS_OF
    )
    first = run_and_collect(config)
    header, *metrics = first["tables"]["model_metrics"]
    model, metric, value = (header.index(c) for c in ("model", "metric", "value"))
    fitted = {r[model]: r[value] for r in metrics if r[metric] == "is_fitted"}
    # big enough that every model is fitted: their inputs' row order and sums matter
    # every customer-base candidate is fitted on the calibration period, the chosen one on
    # the whole history (the others: skipped, not chosen)
    candidates = ("bgnbd", "mbgnbd", "pareto_nbd")
    assert {k: fitted.pop(f"{k}_holdout") for k in candidates} == dict.fromkeys(candidates, 1.0)
    assert sorted(fitted.pop(k) for k in candidates) == [0.0, 0.0, 1.0], fitted
    assert fitted == {"gamma_gamma": 1.0, "churn": 1.0}, fitted

    second = run_and_collect(config)
    assert second["run_id"] != first["run_id"]
    for table, rows in first["tables"].items():
        assert_same_rows(table, rows, second["tables"][table])
    assert second["tables"].keys() == first["tables"].keys()
    assert second["exports"] == first["exports"]

    for delivered in sorted((tmp_path / "later").iterdir()):
        shutil.copy(delivered, tmp_path / delivered.name)
    third = run_and_collect(config)
    assert third["tables"].keys() == first["tables"].keys()
    for table, rows in first["tables"].items():
        if table != "data_quality":
            assert_same_rows(table, rows, third["tables"][table])
    assert third["exports"] == first["exports"]

    kpi = third["tables"]["kpi_monthly"]
    months = [r[kpi[0].index("month")] for r in kpi[1:]]
    assert max(months) == date(2024, 10, 1), "KPI months must stop at the as-of month"

    # data_quality describes the run's inputs: D's files unchanged, D+1's files added
    quality = {"first": first["tables"]["data_quality"], "third": third["tables"]["data_quality"]}
    columns = quality["first"][0]
    sha, name = columns.index("file_sha256"), columns.index("file_name")
    files_of_d = {r[sha] for r in quality["first"][1:] if r[sha] is not None}
    assert_same_rows(
        "data_quality (rows of D's files)",
        [columns] + [r for r in quality["first"][1:] if r[sha] in files_of_d],
        [columns] + [r for r in quality["third"][1:] if r[sha] in files_of_d],
    )
    added = {
        r[name] for r in quality["third"][1:] if r[sha] is not None and r[sha] not in files_of_d
    }
    assert added == {"transactions_2.csv", "events_2.jsonl"}


# --- parallel aggregation -----------------------------------------------------------------

ROWS = 300_000  # three of DuckDB's row groups: two threads aggregate in parallel


def _plant_core_and_customer_360(con: duckdb.DuckDBPyConnection) -> None:
    """30 customers with 10,000 orders and events each, spread over every row group, and a
    customer_360 of 300,000 customers; amounts and scores are arbitrary doubles."""
    con.execute("set threads = 2")
    con.execute("select setseed(0.42)")
    for schema in ("core", "models", "marts"):
        con.execute(f"create schema {schema}")
    con.execute(f"""
        create table core.transactions as
        select 'c' || (i % 30) as customer_id, 'o' || i as order_id,
               timestamp '2022-01-01' + to_seconds(i * 300 + i % 7) as order_at,
               (timestamp '2022-01-01' + to_seconds(i * 300 + i % 7))::date as order_date,
               random() * 100 as amount, 1.0::double as quantity,
               if(i % 50 = 0, 'returned', 'completed') as status,
               i % 50 <> 0 as is_completed_order, 'EUR' as currency, 'web' as channel,
               'card' as payment_method, 1 as line_count
        from range({ROWS}) r(i)""")
    con.execute(f"""
        create table core.events as
        select 'f' as _file_sha256, i as _row_number, 'c' || (i % 30) as customer_id,
               'e' || i as event_id,
               ['support_ticket', 'survey_response', 'complaint'][i % 3 + 1] as event_type,
               'web' as channel, random() * 10 as value, '{{"survey": "nps"}}' as properties,
               timestamp '2022-01-01' + to_seconds(i * 300) as event_at
        from range({ROWS}) r(i)""")
    con.execute("""
        create table core.customers as
        select 'c' || i as customer_id, date '1980-01-01' as birth_date, 'f' as gender,
               'DE' as country, true as marketing_consent, timestamp '2021-01-01' as signup_at,
               timestamp '2021-01-01' as updated_at
        from range(30) r(i)""")
    # the record versions and id map the churn features read the profile through
    con.execute("""
        create table core.customer_records as
        select customer_id, birth_date, gender, country, marketing_consent, signup_at,
               updated_at, timestamp '2021-01-02' as _ingested_at, 'c.csv' as _source_file,
               'f' as _file_sha256, row_number() over (order by customer_id) as _row_number
        from core.customers""")
    con.execute("""
        create table core.customer_map as
        select customer_id as source_customer_id, customer_id, 'self' as match_rule
        from core.customers""")
    con.execute(f"""
        create table marts.customer_360 as
        select 'c' || i as customer_id, i % 2 = 0 as marketing_consent,
               random() * 1000 as revenue_total, random() * 1000 as net_revenue,
               random() * 1000 as predicted_clv, random() as churn_probability,
               's' || i % 3 as rfm_segment, 't' || i % 2 as value_tier,
               'l' || i % 4 as lifecycle_stage, 'a' || i % 2 as recommended_action,
               'b' || i % 3 as churn_band
        from range({ROWS}) r(i)""")


def test_aggregations_over_many_rows_agree_to_the_last_bit_on_every_run():
    """DuckDB adds a group's partial sums in whatever order its threads finish, and DOUBLE
    addition is not associative: the SQL behind the models and the marts must add exactly
    (DECIMAL, integers) so that a rerun gives the same bits, and so the same model."""
    con = duckdb.connect()
    _plant_core_and_customer_360(con)
    queries = {
        "models/churn_features": "select * from models.churn_features order by customer_id",
        "models/rfm": "select * from models.rfm order by customer_id",
        "models/clv_summary": "select * from models.clv_summary order by resolution, customer_id",
        "marts/kpi_monthly": "select * from temp.main.kpi_monthly_run order by month",
        "marts/segment_summary": "select * from temp.main.segment_summary_run order by dimension, segment",
    }
    params = {
        "as_of": AS_OF,
        "cutoff": AS_OF,
        "unit_days": 1,
        "period_days": 1,
        "run_id": "r",
        "resolution": "both",
    }

    def results() -> dict[str, list[tuple]]:
        out = {}
        for name, query in queries.items():
            run_sql(con, name, params)
            out[name] = con.execute(query).fetchall()
        return out

    first = results()
    assert len(first["models/churn_features"]) == 30
    for _ in range(3):
        again = results()
        assert [n for n in queries if again[n] != first[n]] == []
    con.close()


# --- ties ---------------------------------------------------------------------------------

CUSTOMER_COLUMNS = """
[sources.customers.columns]
customer_id = "CustomerID"
city = "City"
updated_at = "UpdatedAt"
"""


def test_profile_records_updated_at_the_same_time_resolve_to_the_later_file(tmp_path):
    """Two files of one delivery share an ingestion time; with equal updated_at the later
    file name wins, as for orders, instead of whichever row a thread saw first."""
    for name, city in (("cust_b.csv", "Bremen"), ("cust_a.csv", "Aachen")):
        (tmp_path / name).write_text(
            f"CustomerID,City,UpdatedAt\n0001,{city},2024-05-01 10:00:00\n", encoding="utf-8"
        )
    body = (
        f'[sources.customers]\npath = "cust_*.csv"\nformat = "csv"\n{CUSTOMER_COLUMNS}'
        '[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "CustomerID"\n'
        'order_ts = "InvoiceDate"\namount = "Amount"\n'
    )
    (tmp_path / "tx.csv").write_text(
        "CustomerID,InvoiceDate,Amount\n0001,2024-05-02,10\n", encoding="utf-8"
    )
    con = run_to_core(write_config(tmp_path, body))
    assert con.execute("select customer_id, city from core.customers").fetchall() == [
        ("0001", "Bremen")
    ]
    con.close()


# --- the helper ---------------------------------------------------------------------------


def test_the_steps_reject_a_name_the_step_list_does_not_have(tmp_path):
    with pytest.raises(ValueError, match="unknown steps"):
        run_pipeline(tmp_path / "crm.toml", AS_OF, ["ingest", "dedupe"])
