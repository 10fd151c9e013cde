"""Rows in, rows out: sql/staging/*.sql, each run alone on hand-made raw.<source> tables
(all VARCHAR plus the lineage columns, as pipelines/load/ingest.py creates them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from pipelines.config_sections import CANONICAL_FIELDS
from pipelines.sqlrun import run_sql

LINEAGE = "_file_sha256 varchar, _source_file varchar, _row_number bigint, _ingested_at timestamp"
INGESTED = datetime(2025, 3, 1, 8, 0)

# source_params() of pipelines/load/clean.py for a source with no special settings
PARAMS = {
    "timestamp_format": [""],
    "date_format": [""],
    "timezone": "UTC",
    "decimal_comma": False,
    "missing_values": ["", "na", "null"],
    "keep_identical_lines": False,
}


def stage(con, source: str, params: dict) -> None:
    """Run sql/staging/<source>.sql over every file of raw.<source> (the clean step's
    pending files: pipelines/load/processing.py) and keep its rows as staging.<source>."""
    con.execute(
        "create or replace temp table pending_files as "
        f"select distinct _file_sha256 as file_sha256 from raw.{source}"
    )
    run_sql(con, f"staging/{source}", params)
    con.execute(f"create or replace table staging.{source} as select * from staged_{source}")


@pytest.fixture
def raw(table):
    """``raw(source, [{field: text, ...}, ...])``: raw.<source> with every canonical field
    (VARCHAR, unset ones NULL); row n of the list is _row_number n + 1 of file 'f1'."""

    def make(source: str, records: list[dict]) -> None:
        required, optional = CANONICAL_FIELDS[source]
        fields = (*required, *optional)
        unknown = {k for r in records for k in r} - set(fields)
        assert not unknown, unknown
        columns = LINEAGE + "".join(f", {f} varchar" for f in fields)
        table(
            f"raw.{source}",
            columns,
            [
                ("f1", "f1.csv", n, INGESTED, *(r.get(f) for f in fields))
                for n, r in enumerate(records, start=1)
            ],
        )

    return make


@pytest.fixture
def fx(table):
    """staging.fx_rates as pipelines/load/clean.py write_fx_rates makes it."""

    def make(rates: list[tuple]) -> None:
        table(
            "staging.fx_rates",
            "currency varchar, units_per_base double, is_configured boolean",
            rates,
        )

    return make


# -- staging/transactions.sql ------------------------------------------------------------


def test_transactions_parses_and_normalises_text(con, raw, fx, rows):
    # ids kept as text, codes upper/lower-cased, '1,234.50' loses its thousands comma, an
    # ISO timestamp with an offset becomes UTC, 'Paid' is a completed status; with no
    # delivered amount it is quantity x unit price.
    raw(
        "transactions",
        [
            {
                "customer_id": "C1",
                "order_id": "O1",
                "product_id": "P1",
                "order_ts": "2025-01-02T03:04:05+02:00",
                "quantity": "2",
                "unit_price": "1,234.50",
                "currency": "eur",
                "channel": "Web",
                "payment_method": "Card",
                "status": "Paid",
            }
        ],
    )
    fx([("EUR", 1.0, True)])
    stage(con, "transactions", PARAMS)
    assert rows("""
        select _file_sha256, _row_number, customer_id, order_id, product_id, quantity,
               unit_price, amount_in_currency, amount, currency, unconvertible_currency,
               channel, payment_method, status, quantity_text, unit_price_text, order_at,
               keeps_identical_lines
        from staging.transactions""") == [
        (
            "f1",
            1,
            "C1",
            "O1",
            "P1",
            Decimal("2.0000"),
            Decimal("1234.5000"),
            Decimal("2469.0000"),
            2469.0,
            "EUR",
            None,
            "web",
            "card",
            "completed",
            "2",
            "1,234.50",
            datetime(2025, 1, 2, 1, 4, 5),
            False,
        )
    ]


def test_transactions_converts_to_the_base_currency(con, raw, fx, rows):
    # GBP at 0.8 per EUR: 10 GBP is 12.5 EUR; a currency without a rate has no amount and
    # is named in unconvertible_currency; a line without a currency is taken as is.
    raw(
        "transactions",
        [
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "10", "currency": "gbp"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "10", "currency": "USD"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "10"},
        ],
    )
    fx([("EUR", 1.0, True), ("GBP", 0.8, True)])
    stage(con, "transactions", PARAMS)
    assert rows("""
        select _row_number, amount_in_currency, amount, currency, unconvertible_currency
        from staging.transactions order by _row_number""") == [
        (1, Decimal("10.0000"), 12.5, "GBP", None),
        (2, Decimal("10.0000"), None, "USD", "USD"),
        (3, Decimal("10.0000"), 10.0, None, None),
    ]


def test_transactions_mixed_currencies_without_configured_rates(con, raw, fx, rows):
    # No [currency] table but two codes in the exports: nothing is converted (validation
    # asks for rates); a line without a currency still keeps its amount.
    raw(
        "transactions",
        [
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "10", "currency": "EUR"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "7", "currency": "GBP"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "3"},
        ],
    )
    fx([("EUR", 1.0, False), ("GBP", 1.0, False)])
    stage(con, "transactions", PARAMS)
    assert rows("""
        select _row_number, amount, unconvertible_currency
        from staging.transactions order by _row_number""") == [
        (1, None, "EUR"),
        (2, None, "GBP"),
        (3, 3.0, None),
    ]


def test_transactions_negative_completed_line_is_a_return(con, raw, fx, rows):
    # A negative amount on a completed ('shipped') or status-less line is a return; a
    # negative cancelled line stays cancelled; a positive line stays completed.
    raw(
        "transactions",
        [
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "-5", "status": "shipped"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "-5"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "-5", "status": "Void"},
            {"customer_id": "C1", "order_ts": "2025-01-02", "amount": "5", "status": "OK"},
        ],
    )
    fx([])
    stage(con, "transactions", PARAMS)
    assert rows("select _row_number, amount, status from staging.transactions order by 1") == [
        (1, -5.0, "returned"),
        (2, -5.0, "returned"),
        (3, -5.0, "cancelled"),
        (4, 5.0, "completed"),
    ]


def test_transactions_missing_value_markers_are_no_id(con, raw, fx, rows):
    # With missing_values ['', 'na', 'null'], 'NA', 'Null' and '' ids are NULL (matched
    # case-insensitively); 'N/A' is not in this list and stays an id.
    raw(
        "transactions",
        [
            {"customer_id": "NA", "order_id": "Null", "product_id": "", "order_ts": "2025-01-02"},
            {"customer_id": "C2", "order_id": "O2", "product_id": "N/A", "order_ts": "2025-01-02"},
        ],
    )
    fx([])
    stage(con, "transactions", PARAMS)
    assert rows(
        "select _row_number, customer_id, order_id, product_id from staging.transactions order by 1"
    ) == [(1, None, None, None), (2, "C2", "O2", "N/A")]


def test_transactions_large_quantity_times_price_does_not_overflow(con, raw, fx, rows):
    # 10^6 x 10^9 = 10^15 overflows DECIMAL(18, 4) (max below 10^14): the product is taken
    # in DECIMAL(38, 4), so the step runs and amount_plausible can quarantine the line.
    raw(
        "transactions",
        [
            {
                "customer_id": "C1",
                "order_ts": "2025-01-02",
                "quantity": "1000000",
                "unit_price": "1000000000",
            }
        ],
    )
    fx([])
    stage(con, "transactions", PARAMS)
    assert rows("select amount_in_currency, amount from staging.transactions") == [
        (Decimal("1000000000000000.0000"), 1e15)
    ]


def test_transactions_decimal_comma_and_timestamp_format(con, raw, fx, rows):
    # decimal_comma: '1.234,5' is 1234.5; a timestamp_format in Europe/Berlin (UTC+1 in
    # January) is read as local time and stored in UTC.
    raw(
        "transactions",
        [{"customer_id": "C1", "order_ts": "02/01/2025 10:30", "amount": "1.234,5"}],
    )
    fx([])
    params = PARAMS | {
        "decimal_comma": True,
        "timestamp_format": ["%d/%m/%Y %H:%M"],
        "timezone": "Europe/Berlin",
    }
    stage(con, "transactions", params)
    assert rows("select amount, order_at from staging.transactions") == [
        (1234.5, datetime(2025, 1, 2, 9, 30))
    ]


def test_transactions_timestamp_formats_are_tried_in_order(con, raw, fx, rows):
    # one export mixing day-first with time and ISO dates: each value gets the first format
    # that parses it; a value none parses stays NULL (the validation rule quarantines it)
    raw(
        "transactions",
        [
            {"customer_id": "C1", "order_ts": "02/01/2025 10:30", "amount": "1"},
            {"customer_id": "C2", "order_ts": "2025-01-03", "amount": "1"},
            {"customer_id": "C3", "order_ts": "Jan 4th", "amount": "1"},
        ],
    )
    fx([])
    params = PARAMS | {"timestamp_format": ["%d/%m/%Y %H:%M", "%Y-%m-%d"]}
    stage(con, "transactions", params)
    assert rows("select customer_id, order_at from staging.transactions order by 1") == [
        ("C1", datetime(2025, 1, 2, 10, 30)),
        ("C2", datetime(2025, 1, 3)),
        ("C3", None),
    ]


# -- staging/customers.sql ---------------------------------------------------------------


def test_customers_normalises_fields(con, raw, rows):
    # e-mail trimmed and lower-cased, name spaces collapsed plus an order-free name key,
    # dates and timestamps parsed, consent words read as booleans, country upper-cased;
    # the phone text is kept for pipelines/load/clean.py to normalise.
    raw(
        "customers",
        [
            {
                "customer_id": "C1",
                "email": " Ann.Lee@Example.COM ",
                "phone": "030 1234567",
                "full_name": "  Lee,   Ann ",
                "birth_date": "1990-04-05",
                "gender": "F",
                "city": "Berlin",
                "country": "de",
                "signup_ts": "2024-01-02 03:04:05",
                "marketing_consent": "opt-in",
                "updated_at": "2025-01-01T00:00:00Z",
            },
            {"customer_id": "null", "birth_date": "not a date", "marketing_consent": "maybe"},
        ],
    )
    stage(con, "customers", PARAMS)
    assert rows("""
        select _row_number, customer_id, email, phone_text, full_name, name_key,
               birth_date_text, birth_date, gender, city, country, marketing_consent_text,
               marketing_consent, signup_text, signup_at, updated_text, updated_at
        from staging.customers order by _row_number""") == [
        (
            1,
            "C1",
            "ann.lee@example.com",
            "030 1234567",
            "Lee, Ann",
            "ann lee",
            "1990-04-05",
            datetime(1990, 4, 5).date(),
            "f",
            "Berlin",
            "DE",
            "opt-in",
            True,
            "2024-01-02 03:04:05",
            datetime(2024, 1, 2, 3, 4, 5),
            "2025-01-01T00:00:00Z",
            datetime(2025, 1, 1),
        ),
        (
            2,
            None,
            None,
            None,
            None,
            None,
            "not a date",
            None,
            None,
            None,
            None,
            "maybe",
            None,
            None,
            None,
            None,
            None,
        ),
    ]


def test_customers_date_format(con, raw, rows):
    # date_format '%d.%m.%Y' reads German dates; an ISO date no longer parses.
    raw(
        "customers",
        [
            {"customer_id": "C1", "birth_date": "05.04.1990"},
            {"customer_id": "C2", "birth_date": "1990-04-05"},
        ],
    )
    stage(con, "customers", PARAMS | {"date_format": ["%d.%m.%Y"]})
    assert rows("select customer_id, birth_date from staging.customers order by 1") == [
        ("C1", datetime(1990, 4, 5).date()),
        ("C2", None),
    ]


# -- staging/events.sql ------------------------------------------------------------------


def test_events_normalises_fields(con, raw, rows):
    # event type trimmed, spaces to underscores, lower-cased; value parsed to a double;
    # the survey named in the JSON properties lower-cased, none for text that is not JSON;
    # missing-value markers in ids are NULL.
    raw(
        "events",
        [
            {
                "customer_id": "C1",
                "event_id": "E1",
                "event_ts": "2025-02-03 04:05:06",
                "event_type": " Survey Response ",
                "channel": "EMAIL",
                "value": "9",
                "properties": '{"survey": "NPS"}',
            },
            {
                "customer_id": "C2",
                "event_id": "NA",
                "event_ts": "2025-02-03",
                "event_type": "page_view",
                "value": "1,5",
                "properties": "not json",
            },
        ],
    )
    stage(con, "events", PARAMS)
    assert rows("""
        select _row_number, customer_id, event_id, event_type, channel, value_text, value,
               properties, survey, event_at
        from staging.events order by _row_number""") == [
        (
            1,
            "C1",
            "E1",
            "survey_response",
            "email",
            "9",
            9.0,
            '{"survey": "NPS"}',
            "nps",
            datetime(2025, 2, 3, 4, 5, 6),
        ),
        (2, "C2", None, "page_view", None, "1,5", None, "not json", None, datetime(2025, 2, 3)),
    ]


def test_events_decimal_comma(con, raw, rows):
    # with decimal_comma, '1,5' is 1.5 (it is unparseable without, see above)
    raw(
        "events",
        [{"customer_id": "C1", "event_ts": "2025-02-03", "event_type": "x", "value": "1,5"}],
    )
    stage(con, "events", PARAMS | {"decimal_comma": True})
    assert rows("select value from staging.events") == [(1.5,)]
