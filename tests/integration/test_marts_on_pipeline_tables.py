"""marts.data_quality on the tables the pipeline itself builds (ingest to core, twice)."""

from __future__ import annotations

from datetime import date

from pipelines.sqlrun import run_sql
from tests.helpers import run_to_core, write_config


def rows(con, sql, params=None):
    return con.execute(sql, params or {}).fetchall()


def test_data_quality_on_tables_the_pipeline_builds(tmp_path):
    header = b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status\n"
    (tmp_path / "tx1.csv").write_bytes(
        header + b"A1,7,2024-01-05 10:00:00,2,5.00,completed\n"
        b"A2,8,not a date,1,6.00,completed\n"
        b"A3,9,2024-01-07 10:00:00,1,7.00,completed\n"
    )
    (tmp_path / "cust.csv").write_bytes(
        b"CustomerID,Email\n7,seven@example.com\n8,not-an-email\n9,SEVEN@example.com \n"
    )
    body = (
        '[sources.transactions]\npath = "tx*.csv"\nformat = "csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "CustomerID"\n'
        'order_id = "InvoiceNo"\norder_ts = "InvoiceDate"\nquantity = "Quantity"\n'
        'unit_price = "UnitPrice"\nstatus = "Status"\n'
        '[sources.customers]\npath = "cust.csv"\nformat = "csv"\n'
        '[sources.customers.columns]\ncustomer_id = "CustomerID"\nemail = "Email"\n'
    )
    config = write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")
    run_to_core(config, run_id="p0").close()
    (tmp_path / "tx2.csv").write_bytes(  # the next delivery sends order A3 again
        header + b"A3,9,2024-01-07 10:00:00,1,7.00,completed\n"
        b"A4,7,2024-01-09 10:00:00,1,abc,completed\n"
    )
    pipeline = run_to_core(config, run_id="p1")
    try:
        run_sql(pipeline, "marts/data_quality", {"as_of": date(2024, 1, 31), "run_id": "p1"})
        got = rows(
            pipeline,
            "select source, file_name, measure, rule, rows "
            "from temp.main.data_quality_run order by all",
        )
    finally:
        pipeline.close()
    assert got == [
        ("all", None, "customers", None, 2),  # 7 and 9 share an e-mail: one person
        ("all", None, "customers_unified", None, 1),
        ("all", None, "source_customer_ids", None, 3),
        ("customers", "cust.csv", "field_blanked_by_rule", "email_shape", 1),
        ("customers", "cust.csv", "rows_duplicate", None, 0),
        ("customers", "cust.csv", "rows_loaded", None, 3),
        ("customers", "cust.csv", "rows_quarantined", None, 0),
        ("customers", "cust.csv", "rows_read", None, 3),
        ("transactions", "tx1.csv", "quarantined_by_rule", "order_ts_parseable", 1),
        ("transactions", "tx1.csv", "rows_duplicate", None, 1),  # A3, sent again in tx2
        ("transactions", "tx1.csv", "rows_loaded", None, 1),
        ("transactions", "tx1.csv", "rows_quarantined", None, 1),
        ("transactions", "tx1.csv", "rows_read", None, 3),
        ("transactions", "tx2.csv", "quarantined_by_rule", "amount_numeric", 1),
        ("transactions", "tx2.csv", "quarantined_by_rule", "unit_price_numeric", 1),
        ("transactions", "tx2.csv", "rows_duplicate", None, 0),
        ("transactions", "tx2.csv", "rows_loaded", None, 1),
        ("transactions", "tx2.csv", "rows_quarantined", None, 1),
        ("transactions", "tx2.csv", "rows_read", None, 2),
    ]
