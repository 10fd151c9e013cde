"""Inputs users have: Excel sources, several timestamp formats in one export, country
names and alpha-3 codes, and the default earliest plausible date (real history from 1997
loads; sentinel dates are quarantined)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from tests.helpers import run_to_core, write_config

# these files are small: a few bad rows are more than the default 10% of a file
LIMIT = "[validation]\nmax_failed_share = 0.6\n"


def _rows(con, sql):
    return con.execute(sql).fetchall()


def test_an_excel_source_loads_like_its_csv(tmp_path):
    # typed cells: whole numbers stay ids without ".0", date cells need no format, an
    # empty id cell is a missing id (quarantined, not lost)
    pl.DataFrame(
        {
            "Kunde": [1001, 1002, None],
            "Datum": [datetime(1997, 1, 1, 10, 0), datetime(1997, 2, 3), datetime(1997, 3, 4)],
            "Betrag": [12.5, 3.0, 7.25],
        }
    ).write_excel(tmp_path / "orders.xlsx")
    body = (
        '[sources.transactions]\npath = "orders.xlsx"\n[sources.transactions.columns]\n'
        'customer_id = "Kunde"\norder_ts = "Datum"\namount = "Betrag"\n'
    )
    con = run_to_core(write_config(tmp_path, body, LIMIT))
    try:
        assert _rows(
            con, "select customer_id, order_at, amount from core.transactions order by 1"
        ) == [("1001", datetime(1997, 1, 1, 10, 0), 12.5), ("1002", datetime(1997, 2, 3), 3.0)]
        assert _rows(con, "select _row_number, rules from quarantine.transactions") == [
            (3, "customer_id_present")
        ]
    finally:
        con.close()


def test_timestamp_formats_are_tried_in_order_and_sentinel_dates_are_quarantined(tmp_path):
    # no [validation] table: the default earliest date keeps 1997 and catches 0001-01-01,
    # 1900-01-01 and 1970-01-01 (day zero of spreadsheets and of Unix time)
    (tmp_path / "tx.csv").write_text(
        "cust,when,amount\n"
        "A,31/12/1997 10:30,1\n"
        "B,1998-01-02,2\n"
        "C,01/01/1900 00:00,3\n"
        "D,1970-01-01,4\n"
        "E,0001-01-01,5\n"
        "F,1970-01-02,6\n",
        encoding="utf-8",
    )
    body = (
        '[sources.transactions]\npath = "tx.csv"\n'
        'timestamp_format = ["%d/%m/%Y %H:%M", "%Y-%m-%d"]\n'
        '[sources.transactions.columns]\ncustomer_id = "cust"\norder_ts = "when"\n'
        'amount = "amount"\n'
    )
    con = run_to_core(write_config(tmp_path, body, LIMIT))
    try:
        assert _rows(con, "select customer_id, order_at from core.transactions order by 1") == [
            ("A", datetime(1997, 12, 31, 10, 30)),
            ("B", datetime(1998, 1, 2)),
            ("F", datetime(1970, 1, 2)),
        ]
        assert _rows(con, "select customer_id, rules from quarantine.transactions order by 1") == [
            ("C", "order_ts_not_before_earliest_date"),
            ("D", "order_ts_not_before_earliest_date"),
            ("E", "order_ts_not_before_earliest_date"),
        ]
    finally:
        con.close()


def test_country_names_and_alpha_3_codes_become_alpha_2(tmp_path):
    # "Deutschland" read as DE also lets the national number 030 ... parse
    (tmp_path / "tx.csv").write_text("cust,when,amount\nK1,2024-01-01,1\n", encoding="utf-8")
    (tmp_path / "customers.csv").write_text(
        "id,country,phone\n"
        "K1,Deutschland,030 1234567\n"
        "K2,AUT,0664 1234567\n"
        "K3,united kingdom,\n"
        "K4,Atlantis,\n",
        encoding="utf-8",
    )
    body = (
        '[sources.transactions]\npath = "tx.csv"\n[sources.transactions.columns]\n'
        'customer_id = "cust"\norder_ts = "when"\namount = "amount"\n'
        '[sources.customers]\npath = "customers.csv"\n[sources.customers.columns]\n'
        'customer_id = "id"\ncountry = "country"\nphone = "phone"\n'
    )
    con = run_to_core(write_config(tmp_path, body, LIMIT))
    try:
        assert _rows(con, "select customer_id, country from staging.customers order by 1") == [
            ("K1", "DE"),
            ("K2", "AT"),
            ("K3", "GB"),
            ("K4", "ATLANTIS"),
        ]
        assert _rows(
            con,
            "select customer_id, phone from staging.customers where phone is not null order by 1",
        ) == [("K1", "+49301234567"), ("K2", "+436641234567")]
    finally:
        con.close()
