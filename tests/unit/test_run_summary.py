"""The run summary's file list and its "This run" block (pipelines/summary.py)."""

from __future__ import annotations

from datetime import date

import duckdb

from pipelines.load.processing import SourceFiles
from pipelines.sqlrun import ensure_bookkeeping_tables
from pipelines.summary import EARLIER_FILES_LISTED, format_summary, format_work_summary


def _warehouse(earlier_files: int) -> duckdb.DuckDBPyConnection:
    """Reconciled transaction files: ``earlier_files`` of run r1, one new of run r2."""
    con = duckdb.connect()
    ensure_bookkeeping_tables(con)
    files = [(f"e{i:03d}", f"/x/tx_{i:03d}.csv", "r1") for i in range(earlier_files)]
    files.append(("new", "/x/tx_new.csv", "r2"))
    con.executemany(
        "insert into raw.files (file_sha256, source, file_path, status, run_id) "
        "values (?, 'transactions', ?, 'loaded', ?)",
        files,
    )
    con.execute("""
        create table audit.file_reconciliation as
        select 'transactions' as source, file_path, file_sha256, status, 5 as rows_read,
               5 as rows_loaded, 0 as rows_quarantined, 0 as rows_duplicate, 0 as rows_erased,
               true as is_balanced
        from raw.files""")
    con.execute("create schema core")
    for ddl in (
        "core.duplicate_rows (source varchar, reason varchar)",
        "core.customer_map (source_customer_id varchar, customer_id varchar, match_rule varchar)",
        "core.transactions (order_date date, is_completed_order boolean)",
        "core.events (customer_id varchar)",
    ):
        con.execute(f"create table {ddl}")
    for source in ("transactions", "customers", "events"):
        con.execute(f"create table quarantine.{source} (_file_sha256 varchar, rules varchar)")
    return con


def test_a_few_earlier_files_are_listed_and_many_counted_in_one_line():
    few = format_summary(_warehouse(EARLIER_FILES_LISTED), "r2", date(2025, 1, 1))
    assert few.count("earlier run") == EARLIER_FILES_LISTED and "tx_new.csv" in few
    many = format_summary(_warehouse(EARLIER_FILES_LISTED + 1), "r2", date(2025, 1, 1))
    assert "tx_000.csv" not in many and "tx_new.csv" in many
    assert f"{EARLIER_FILES_LISTED + 1} file(s) of earlier runs, 55 rows, all balanced" in many


def test_this_run_names_what_was_processed_reused_and_changed():
    class Staging:
        files = {
            "transactions": SourceFiles("transactions", "fp", ("a", "b"), ("b",), 3),
            "customers": SourceFiles("customers", "fp", (), (), 0),
        }

    text = format_work_summary({"clean": Staging()}, {"ingest": 0.25, "clean": 1.0})
    assert "transactions 2 file(s) processed, 3 reused as processed by earlier runs" in text
    assert "1 processed again because the source's settings or rules changed" in text
    assert "customers" not in text  # no file at all
    assert "seconds      ingest 0.2, clean 1.0" in text


def test_value_summary_says_which_model_was_chosen_why_and_its_verdict():
    import polars as pl

    from pipelines.scoring.value import ValueReport
    from pipelines.summary import format_value_summary

    metrics = pl.DataFrame(
        [
            ("bgnbd", "holdout_mae_repeat_purchases", 0.819, 0.95),
            ("mbgnbd", "holdout_mae_repeat_purchases", 0.795, 0.95),
            ("pareto_nbd", "holdout_mae_repeat_purchases", 0.794, 0.95),
            ("clv_verdict", "mae_difference", 0.155, None),
            ("clv_verdict", "mae_difference_ci_low", 0.14, None),
            ("clv_verdict", "mae_difference_ci_high", 0.17, None),
            ("clv_verdict", "significant", 1.0, None),
        ],
        schema=["model", "metric", "value", "baseline"],
        orient="row",
    )
    report = ValueReport("periods", 100, 40, "fitted", None, metrics=metrics)
    report.clv_model, report.clv_choice = "mbgnbd", "MBG/NBD chosen: within 1% (...)"
    text = format_value_summary(report, {})
    assert "Model choice: MBG/NBD chosen: within 1% (...)" in text
    assert "holdout MAE, Pareto/NBD" in text and "holdout MAE, MBG/NBD" in text
    assert (
        "verdict: holdout MAE margin over the naive rate +0.155 "
        "(95% paired bootstrap interval +0.140 to +0.170), significant yes"
    ) in text
