"""Exact numbers from real-shaped exports: no id that is not an id, no customer who loses
their orders to another, no line counted twice, no row that stops or poisons a run, and
totals that reconcile to the loaded lines."""

from __future__ import annotations

from datetime import date

import pytest

from tests.helpers import TX_COLUMNS, assert_reconciled, run_to_core, write_config
from tests.pipeline_steps import run_pipeline

HEADER = b"InvoiceNo,CustomerID,InvoiceDate,Quantity,UnitPrice,Status\n"


def rows(con, sql, params=None):
    return con.execute(sql, params or {}).fetchall()


# --- ids ----------------------------------------------------------------------------------


def test_missing_value_markers_in_ids_are_quarantined_not_customers(tx_config):
    data = HEADER + (
        b"A1,NA,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A2,null,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A3,N/A,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A4,NaN,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A5,17850,2024-01-05 10:00:00,1,5.00,completed\n"
        b"NULL,17850,2024-01-06 10:00:00,1,2.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert rows(con, "select customer_id from core.customers") == [("17850",)]
    assert rows(con, "select customer_id, rules from quarantine.transactions order by 1") == [
        ("N/A", "customer_id_present"),
        ("NA", "customer_id_present"),
        ("NaN", "customer_id_present"),
        ("null", "customer_id_present"),
    ]
    # an order id "NULL" is no order id: the line is an order of its own, not order "NULL"
    assert rows(
        con, "select count(*), count(*) filter (where order_id = 'NULL') from core.transactions"
    ) == [(2, 0)]
    assert_reconciled(con)


def test_the_missing_value_list_is_configurable(tx_config):
    data = HEADER + (
        b"A1,NA,2024-01-05 10:00:00,1,5.00,completed\nA2,-,2024-01-05 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}, extra='missing_values = ["-"]'))
    assert rows(con, "select customer_id from core.customers") == [("NA",)]
    assert rows(con, "select customer_id from quarantine.transactions") == [("-",)]


# --- orders -------------------------------------------------------------------------------


def test_an_order_id_shared_by_two_customers_gives_each_their_order(tx_config):
    data = HEADER + (
        b"CA-1,7,2024-01-05 10:00:00,1,5.00,completed\n"
        b"CA-1,8,2024-01-05 10:00:00,2,3.00,completed\n"
        b"CA-1,8,2024-01-05 10:00:00,1,1.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert rows(
        con, "select customer_id, order_id, amount, line_count from core.transactions order by 1"
    ) == [("7", "CA-1", 5.0, 1), ("8", "CA-1", 7.0, 2)]
    assert_reconciled(con)


def test_an_exact_repeat_of_an_order_line_in_one_file_is_a_duplicate(tx_config):
    data = HEADER + (
        b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n"
        b"A1,7,2024-01-05 10:00:00,2,5.00,completed\n"
        b"A2,7,2024-01-06 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert rows(con, "select order_id, amount, line_count from core.transactions order by 1") == [
        ("A1", 15.0, 2),
        ("A2", 5.0, 1),
    ]
    assert rows(con, "select _row_number, reason from core.duplicate_rows") == [
        (2, "identical line repeated in the same file")
    ]
    assert_reconciled(con)


def test_keep_identical_lines_keeps_repeats_as_real_lines(tx_config):
    data = HEADER + (
        b"A1,7,2024-01-05 10:00:00,1,5.00,completed\nA1,7,2024-01-05 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}, extra="keep_identical_lines = true"))
    assert rows(con, "select amount, line_count from core.transactions") == [(10.0, 2)]
    assert rows(con, "select count(*) from core.duplicate_rows") == [(0,)]


def test_identical_rows_without_order_id_stay_separate_purchases(tmp_path):
    # CDNOW's shape: no order id, two identical same-day rows are two purchases
    (tmp_path / "tx.csv").write_bytes(b"cust,date,amount\n1,1997-01-01,10.5\n1,1997-01-01,10.5\n")
    body = (
        '[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n'
        'timestamp_format = "%Y-%m-%d"\n[sources.transactions.columns]\n'
        'customer_id = "cust"\norder_ts = "date"\namount = "amount"\n'
    )
    con = run_to_core(write_config(tmp_path, body, '[validation]\nearliest_date = "1990-01-01"'))
    assert rows(con, "select count(*), sum(amount) from core.transactions") == [(2, 21.0)]


def test_rows_whose_missing_fields_differ_are_never_taken_for_one_row(tmp_path):
    # Rows without an order id are matched across deliveries by their values. One with a
    # channel and no payment method is another row than one with that text as payment
    # method and no channel: joining the values while skipping NULLs made them one, and the
    # later file's row replaced the earlier file's.
    header = b"cust,date,amount,channel,payment\n"
    (tmp_path / "tx1.csv").write_bytes(header + b"1,2024-01-01,10,card,\n")
    (tmp_path / "tx2.csv").write_bytes(header + b"1,2024-01-01,10,,card\n")
    body = (
        '[sources.transactions]\npath = "tx*.csv"\nformat = "csv"\n'
        '[sources.transactions.columns]\ncustomer_id = "cust"\norder_ts = "date"\n'
        'amount = "amount"\nchannel = "channel"\npayment_method = "payment"\n'
    )
    con = run_to_core(write_config(tmp_path, body))
    assert rows(con, "select channel, payment_method from core.transactions order by 1") == [
        ("card", None),
        (None, "card"),
    ]
    assert rows(con, "select count(*) from core.duplicate_rows") == [(0,)]
    assert_reconciled(con)


# --- one row never stops a run -------------------------------------------------------------


def test_an_amount_that_would_overflow_is_quarantined_and_the_run_goes_on(tx_config):
    data = HEADER + (
        b"A1,7,2024-01-05 10:00:00,99999999,500,completed\n"
        b"A2,7,2024-01-05 10:00:00,99999999999999,99999999999999,completed\n"
        b"A3,7,2024-01-06 10:00:00,1,5.00,completed\n"
    )
    con = run_to_core(tx_config({"tx.csv": data}))
    assert rows(con, "select order_id, rules from quarantine.transactions order by 1") == [
        ("A1", "amount_plausible"),
        ("A2", "amount_plausible"),
    ]
    assert rows(con, "select order_id, amount from core.transactions") == [("A3", 5.0)]
    assert_reconciled(con)


def test_implausible_profile_values_are_blanked_with_a_rule(tmp_path):
    (tmp_path / "tx.csv").write_bytes(HEADER + b"A1,7,2024-01-05 10:00:00,1,5.00,completed\n")
    (tmp_path / "c.csv").write_bytes(
        b"CustomerID,FullName,City,SignupDate\n"
        b"7,Ada\x00Lovelace,Lon\x1bdon,9999-12-31\n"
        b"8,Grace Hopper,Arlington,2023-03-01\n"
    )
    body = (
        '[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n'
        + TX_COLUMNS
        + '[sources.customers]\npath = "c.csv"\nformat = "csv"\n'
        '[sources.customers.columns]\ncustomer_id = "CustomerID"\n'
        'full_name = "FullName"\ncity = "City"\nsignup_ts = "SignupDate"\n'
    )
    con = run_to_core(write_config(tmp_path, body))
    assert rows(
        con, "select customer_id, full_name, city, signup_at::date from core.customers order by 1"
    ) == [("7", None, None, None), ("8", "Grace Hopper", "Arlington", date(2023, 3, 1))]
    assert rows(con, "select rule, original_value from quarantine.field_issues order by 1") == [
        ("city_printable", "Lon\x1bdon"),
        ("full_name_printable", "Ada\x00Lovelace"),
        ("signup_ts_not_after_ingestion", "9999-12-31"),
    ]
    assert_reconciled(con)


# --- the whole run: one count of each thing, totals that reconcile ------------------------


def _shop(tmp_path, with_events: bool):
    """Twelve customers: 1-10 buy, 11 only returned goods, 12 only had an order cancelled,
    and (with events) visitor 99 was only ever seen on the web site."""
    lines = [HEADER.decode().strip()]
    for c in range(1, 11):
        for k in range(c % 4 + 1):
            lines.append(f"O{c}-{k},{c},2024-0{k + 1}-1{c % 9} 10:00:00,{k + 1},{c}.25,completed")
    lines.append("O10-R,10,2024-05-02 10:00:00,-1,10.25,returned")
    lines.append("R11,11,2024-03-03 10:00:00,-2,4.10,returned")
    lines.append("C12,12,2024-03-04 10:00:00,1,9.99,cancelled")
    (tmp_path / "tx.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    body = '[sources.transactions]\npath = "tx.csv"\nformat = "csv"\n' + TX_COLUMNS
    if with_events:
        (tmp_path / "ev.jsonl").write_text(
            '{"user": "3", "event": "page_view", "ts": "2024-02-01T10:00:00"}\n'
            '{"user": "99", "event": "page_view", "ts": "2024-02-01T11:00:00"}\n',
            encoding="utf-8",
        )
        body += (
            '[sources.events]\npath = "ev.jsonl"\nformat = "jsonl"\n'
            '[sources.events.columns]\ncustomer_id = "user"\nevent_type = "event"\n'
            'event_ts = "ts"\n'
        )
    body += '[exports]\npath = "exports"\n[report]\npath = "reports"\n'
    return write_config(tmp_path, body, "[validation]\nmax_failed_share = 1.0\n")


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    """One whole run (no report) over :func:`_shop` with events; the open warehouse."""
    import duckdb

    tmp_path = tmp_path_factory.mktemp("shop")
    config = _shop(tmp_path, with_events=True)
    run_id = run_pipeline(config, date(2024, 6, 30), write_report=False)
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    yield con, run_id
    con.close()


def test_revenue_totals_in_the_marts_equal_the_ledger_of_loaded_lines(shop_run):
    con, run_id = shop_run
    # the ledger, straight from the loaded lines: completed sales, minus returns
    gross, net = rows(
        con,
        """
        select sum(amount::decimal(38, 4)) filter (where status = 'completed'),
               sum(amount::decimal(38, 4)) filter (where status = 'completed'
                                                    or (amount < 0 and status <> 'cancelled'))
        from core.transaction_lines""",
    )[0]
    assert float(net) == pytest.approx(float(gross) - 10.25 - 8.20, abs=1e-9)
    totals = rows(
        con,
        "select sum(revenue_total::decimal(38, 4)), "
        "sum(net_revenue::decimal(38, 4)) from marts.customer_360",
    )[0]
    assert totals == (gross, net)
    assert rows(
        con,
        "select net_revenue, orders_total, orders_completed from "
        "marts.customer_360 where customer_id in ('11', '12') order by 1",
    ) == [(-8.2, 1, 0), (0.0, 1, 0)]
    for dimension, revenue, net_revenue in rows(
        con,
        """
            select dimension, sum(revenue_total::decimal(38, 4)),
                   sum(net_revenue::decimal(38, 4))
            from marts.segment_summary where run_id = $r group by 1""",
        {"r": run_id},
    ):
        assert (dimension, revenue, net_revenue) == (dimension, gross, net)
    assert rows(
        con,
        "select sum(revenue::decimal(38, 4)) from marts.kpi_monthly where run_id = $r",
        {"r": run_id},
    ) == [(gross,)]


def test_one_customer_count_and_one_order_count_everywhere(shop_run):
    con, run_id = shop_run
    [(customers,)] = rows(con, "select count(*) from marts.customer_360")
    # 1-12 ordered; visitor 99 is a person in core but no customer as of the run
    assert customers == 12
    assert rows(con, "select count(*) from core.customers") == [(13,)]
    assert rows(
        con,
        "select rows from marts.data_quality where run_id = $r and measure = 'customers'",
        {"r": run_id},
    ) == [(customers,)]
    [(headline,)] = rows(
        con,
        "select sum(customers) from marts.segment_summary "
        "where run_id = $r and dimension = 'value_tier'",
        {"r": run_id},
    )
    assert headline == customers
    from pipelines.summary import format_summary

    text = format_summary(con, run_id, date(2024, 6, 30))
    assert f"Customers: {customers} as of 2024-06-30" in text
    assert "core.customers holds 13 people; 1 of them are no customers yet as of" in text
    [(completed,)] = rows(con, "select count(*) from core.transactions where is_completed_order")
    assert f"Orders: {completed} completed (3 cancelled, refunded or returned" in text
    assert rows(
        con, "select sum(orders) from marts.kpi_monthly where run_id = $r", {"r": run_id}
    ) == [(completed,)]


def test_a_kpi_without_its_source_is_empty_not_zero(shop_run):
    con, run_id = shop_run
    # events exist, but none is a complaint or support ticket: complaints were not measured
    assert rows(
        con,
        "select count(*), count(orders), count(complaint_rate) "
        "from marts.kpi_monthly where run_id = $r",
        {"r": run_id},
    ) == [(6, 6, 0)]


def test_empty_exports_say_why_in_the_summary_and_the_report(tmp_path):
    import duckdb

    from pipelines.publish.report import collect_report_context, render_report
    from pipelines.summary import format_exports_note

    config = _shop(tmp_path, with_events=False)
    run_id = run_pipeline(config, date(2024, 6, 30), write_report=False)
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    try:
        note = format_exports_note(con)
        html = render_report(collect_report_context(con, run_id=run_id, as_of=date(2024, 6, 30)))
    finally:
        con.close()
    assert "no customer has an e-mail address or marketing consent" in note
    assert 'data-field="exports_reason"' in html
    assert "no customer has an e-mail address or marketing consent" in html


def test_a_rerun_after_a_failed_run_lists_each_file_once(tmp_path):
    import duckdb

    from pipelines.summary import format_summary

    config = _shop(tmp_path, with_events=False)
    # the first run loads the file and stops after core (as a failed run would)
    run_pipeline(config, date(2024, 6, 30), ["ingest", "clean", "validate", "core"])
    run_id = run_pipeline(config, date(2024, 6, 30), write_report=False)
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"), read_only=True)
    try:
        text = format_summary(con, run_id, date(2024, 6, 30))
    finally:
        con.close()
    assert text.count("tx.csv") == 1
    assert "earlier run" in text.split("tx.csv", 1)[1].splitlines()[0]
    assert "already ingested" not in text
