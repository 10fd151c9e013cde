"""Rows in, rows out: sql/core/*.sql, each run alone on hand-made input tables typed as
the earlier steps write them (staging.* as sql/staging/*.sql selects, quarantine.* keyed
by file and row, raw.files from sql/warehouse/bookkeeping.sql, core.identity_clusters as
pipelines/core/identity.py registers it). No test runs an earlier SQL file."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

import pytest

from pipelines.sqlrun import run_sql


def _names(columns: str) -> list[str]:
    """Column names of a "name type, name type(p, s), ..." list."""
    return re.findall(r"(?:^|, )(\w+) ", columns)


DAY1 = datetime(2025, 3, 1, 8, 0)
DAY2 = datetime(2025, 3, 2, 8, 0)
T = datetime(2025, 1, 5, 12, 0)

QUARANTINE = "_file_sha256 varchar, _row_number bigint"

# staging.customers columns that core/customer_records.sql reads, with their types
CUSTOMER_RECORD_COLUMNS = (
    "_file_sha256 varchar, _source_file varchar, _row_number bigint, customer_id varchar, "
    "email varchar, phone varchar, full_name varchar, name_key varchar, birth_date date, "
    "gender varchar, city varchar, country varchar, signup_at timestamp, "
    "marketing_consent boolean, updated_at timestamp, _ingested_at timestamp"
)
CUSTOMER_FIELDS = _names(CUSTOMER_RECORD_COLUMNS)

# staging.transactions columns that core/transaction_lines.sql reads, with their types
TX_COLUMNS = (
    "_file_sha256 varchar, _source_file varchar, _row_number bigint, customer_id varchar, "
    "order_id varchar, product_id varchar, quantity decimal(18, 4), "
    "unit_price decimal(18, 4), amount double, status varchar, currency varchar, "
    "channel varchar, payment_method varchar, order_at timestamp, "
    "keeps_identical_lines boolean, _ingested_at timestamp"
)
TX_FIELDS = _names(TX_COLUMNS)

EVENT_COLUMNS = (
    "_file_sha256 varchar, _source_file varchar, _row_number bigint, customer_id varchar, "
    "event_id varchar, event_type varchar, channel varchar, value double, "
    "properties varchar, event_at timestamp, _ingested_at timestamp"
)
EVENT_FIELDS = _names(EVENT_COLUMNS)


def _rows(fields: list[str], defaults: dict, records: list[dict]) -> list[tuple]:
    unknown = {k for r in records for k in r} - set(fields)
    assert not unknown, unknown
    return [tuple((defaults | r).get(f) for f in fields) for r in records]


@pytest.fixture
def customer_records(table):
    """``customer_records(table_name, records)``: staging.customers-shaped rows."""

    def make(name: str, records: list[dict]) -> None:
        defaults = {"_file_sha256": "f1", "_source_file": "f1.csv", "_ingested_at": DAY1}
        table(name, CUSTOMER_RECORD_COLUMNS, _rows(CUSTOMER_FIELDS, defaults, records))

    return make


@pytest.fixture
def staged_tx(table):
    """``staged_tx(records, quarantined=[])``: staging.transactions and
    quarantine.transactions; a line defaults to 1 x 5.00 of P1 at T for C1."""

    def make(records: list[dict], quarantined: list[tuple] = ()) -> None:
        defaults = {
            "_file_sha256": "f1",
            "_source_file": "f1.csv",
            "_ingested_at": DAY1,
            "customer_id": "C1",
            "product_id": "P1",
            "quantity": Decimal("1"),
            "unit_price": Decimal("5"),
            "amount": 5.0,
            "status": "completed",
            "order_at": T,
            "keeps_identical_lines": False,
        }
        table("staging.transactions", TX_COLUMNS, _rows(TX_FIELDS, defaults, records))
        table("quarantine.transactions", QUARANTINE, quarantined)

    return make


@pytest.fixture
def customer_map(table):
    """core.customer_map from (source_customer_id, customer_id) pairs."""

    def make(pairs: list[tuple]) -> None:
        table("core.customer_map", "source_customer_id varchar, customer_id varchar", pairs)

    return make


@pytest.fixture
def tx_files(insert):
    """raw.files rows of transaction files: (sha256, path, rows_read)."""

    def make(files: list[tuple]) -> None:
        insert(
            "raw.files",
            "file_sha256, source, file_path, rows_read",
            [(sha, "transactions", path, n) for sha, path, n in files],
        )

    return make


# -- core/customer_records.sql -----------------------------------------------------------


def test_customer_records_keeps_one_copy_of_a_resent_record(con, customer_records, table, rows):
    # C1 re-sent unchanged in a later file (f2) is kept once, from its first delivery (even
    # with NULL fields, which compare equal here); C1 with a new e-mail is a record of its
    # own; a quarantined row is left out.
    customer_records(
        "staging.customers",
        [
            {"_row_number": 1, "customer_id": "C1", "email": "a@x", "city": None},
            {"_row_number": 2, "customer_id": "C2", "email": "b@x"},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
                "customer_id": "C1",
                "email": "a@x",
                "city": None,
            },
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 2,
                "customer_id": "C1",
                "email": "new@x",
            },
        ],
    )
    table("quarantine.customers", QUARANTINE, [("f1", 2)])
    run_sql(con, "core/customer_records")
    assert rows(
        "select _file_sha256, _row_number, customer_id, email from core.customer_records order by 1, 2"
    ) == [("f1", 1, "C1", "a@x"), ("f2", 2, "C1", "new@x")]


# -- core/identity_edges.sql -------------------------------------------------------------


def test_identity_edges_match_rules(con, customer_records, rows):
    # C1/C2 share an e-mail; C3/C4 share a phone and a name key; C5 has C3's phone but
    # another name: no edge. C1's second record with the same e-mail adds no pair.
    customer_records(
        "core.customer_records",
        [
            {"customer_id": "C1", "email": "ann@x", "name_key": "ann lee"},
            {"customer_id": "C1", "email": "ann@x", "city": "Berlin", "name_key": "ann lee"},
            {"customer_id": "C2", "email": "ann@x", "name_key": "a lee"},
            {"customer_id": "C3", "phone": "+4930123", "name_key": "bob king"},
            {"customer_id": "C4", "phone": "+4930123", "name_key": "bob king"},
            {"customer_id": "C5", "phone": "+4930123", "name_key": "carl may"},
        ],
    )
    run_sql(con, "core/identity_edges", {"max_shared": 5})
    assert rows("select * from core.identity_edges order by all") == [
        ("C1", "C2", "email"),
        ("C3", "C4", "phone_name"),
    ]


def test_identity_edges_placeholder_contact_links_nobody(con, customer_records, rows):
    # With max_shared 2, an e-mail on three ids is a placeholder and links none of them;
    # the same e-mail on two ids still would (C4/C5).
    customer_records(
        "core.customer_records",
        [
            {"customer_id": "C1", "email": "noreply@x"},
            {"customer_id": "C2", "email": "noreply@x"},
            {"customer_id": "C3", "email": "noreply@x"},
            {"customer_id": "C4", "email": "d@x"},
            {"customer_id": "C5", "email": "d@x"},
        ],
    )
    run_sql(con, "core/identity_edges", {"max_shared": 2})
    assert rows("select * from core.identity_edges") == [("C4", "C5", "email")]


# -- core/customer_map.sql ---------------------------------------------------------------


def test_customer_map_survivor_and_ids_from_every_source(con, customer_records, table, rows):
    # Cluster {C1, C2}: C2 signed up first and survives, C1 maps to it by its rule. C3 is
    # known only from an order, C5 only from an event: each maps to itself. C4 appears only
    # on a quarantined order line: no customer.
    customer_records(
        "core.customer_records",
        [
            {"customer_id": "C1", "signup_at": datetime(2024, 5, 1)},
            {"customer_id": "C2", "signup_at": datetime(2024, 1, 1)},
        ],
    )
    table(
        "core.identity_clusters",
        "customer_id varchar, cluster_id varchar, match_rule varchar",
        [("C1", "C1", "email"), ("C2", "C1", "email")],
    )
    table(
        "staging.transactions",
        "_file_sha256 varchar, _row_number bigint, customer_id varchar",
        [("t1", 1, "C3"), ("t1", 2, "C4"), ("t1", 3, None)],
    )
    table("quarantine.transactions", QUARANTINE, [("t1", 2)])
    table(
        "staging.events",
        "_file_sha256 varchar, _row_number bigint, customer_id varchar",
        [("e1", 1, "C5"), ("e1", 2, "C1")],
    )
    table("quarantine.events", QUARANTINE)
    run_sql(con, "core/customer_map")
    assert rows("select * from core.customer_map order by all") == [
        ("C1", "C2", "email"),
        ("C2", "C2", "self"),
        ("C3", "C3", "self"),
        ("C5", "C5", "self"),
    ]


def test_customer_map_without_signup_the_smallest_id_survives(con, customer_records, table, rows):
    # Neither C8 nor C7 has a sign-up date: the smaller id, C7, survives; a dated id
    # would beat both (C9 is dated but in its own, single-id world here: not clustered).
    customer_records(
        "core.customer_records",
        [{"customer_id": "C8"}, {"customer_id": "C7"}, {"customer_id": "C9", "signup_at": T}],
    )
    table(
        "core.identity_clusters",
        "customer_id varchar, cluster_id varchar, match_rule varchar",
        [("C7", "C7", "phone_name"), ("C8", "C7", "phone_name")],
    )
    table("staging.transactions", "_file_sha256 varchar, _row_number bigint, customer_id varchar")
    table("quarantine.transactions", QUARANTINE)
    table("staging.events", "_file_sha256 varchar, _row_number bigint, customer_id varchar")
    table("quarantine.events", QUARANTINE)
    run_sql(con, "core/customer_map")
    assert rows("select * from core.customer_map order by all") == [
        ("C7", "C7", "self"),
        ("C8", "C7", "phone_name"),
        ("C9", "C9", "self"),
    ]


# -- core/transaction_lines.sql ----------------------------------------------------------


def test_transaction_lines_latest_delivery_of_an_order_wins(
    con, staged_tx, tx_files, customer_map, rows
):
    # Order O1 arrives with two lines in f1 and again, corrected to one line, in f2 (a day
    # later): only f2's line is kept. O2 came once, in f1, and is kept. Lines are keyed to
    # the surviving customer id (C1 -> C9).
    staged_tx(
        [
            {"_row_number": 1, "order_id": "O1", "amount": 5.0},
            {"_row_number": 2, "order_id": "O1", "amount": 7.0, "product_id": "P2"},
            {"_row_number": 3, "order_id": "O2", "amount": 1.0},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
                "order_id": "O1",
                "amount": 6.0,
            },
        ]
    )
    tx_files([("f1", "f1.csv", 3), ("f2", "f2.csv", 1)])
    customer_map([("C1", "C9")])
    run_sql(con, "core/transaction_lines")
    assert rows("""
        select _file_sha256, _row_number, customer_id, source_customer_id, order_id, amount
        from core.transaction_lines order by all""") == [
        ("f1", 3, "C9", "C1", "O2", 1.0),
        ("f2", 1, "C9", "C1", "O1", 6.0),
    ]


def test_transaction_lines_a_reused_order_id_of_another_customer_replaces_nothing(
    con, staged_tx, tx_files, customer_map, rows
):
    # O1 of C1 in f1, and an O1 of C2 in the next day's f2 (the shop's numbering restarted):
    # two customers' orders, both kept; a redelivery replaces only the same customer's order.
    staged_tx(
        [
            {"_row_number": 1, "order_id": "O1", "amount": 5.0},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
                "order_id": "O1",
                "customer_id": "C2",
                "amount": 6.0,
            },
        ]
    )
    tx_files([("f1", "f1.csv", 1), ("f2", "f2.csv", 1)])
    customer_map([("C1", "C1"), ("C2", "C2")])
    run_sql(con, "core/transaction_lines")
    assert rows("""
        select _file_sha256, customer_id, order_id, amount
        from core.transaction_lines order by all""") == [
        ("f1", "C1", "O1", 5.0),
        ("f2", "C2", "O1", 6.0),
    ]


def test_transaction_lines_same_ingestion_time_later_file_name_wins(
    con, staged_tx, tx_files, customer_map, rows
):
    # Two files of one run (same _ingested_at) both carry O1: tx_02.csv wins over tx_01.csv.
    staged_tx(
        [
            {
                "_file_sha256": "bbb",
                "_source_file": "tx_01.csv",
                "_row_number": 1,
                "order_id": "O1",
            },
            {
                "_file_sha256": "aaa",
                "_source_file": "tx_02.csv",
                "_row_number": 1,
                "order_id": "O1",
            },
        ]
    )
    tx_files([("bbb", "tx_01.csv", 1), ("aaa", "tx_02.csv", 1)])
    customer_map([("C1", "C1")])
    run_sql(con, "core/transaction_lines")
    assert rows("select _source_file, order_id from core.transaction_lines") == [
        ("tx_02.csv", "O1")
    ]


def test_transaction_lines_exact_repeat_in_one_file_kept_once(
    con, staged_tx, tx_files, customer_map, rows
):
    # Rows 1 and 2 are the same O1 line, every field equal: a duplicated export line, kept
    # once (the first). Row 3 is O1 with another product: a line of its own. A quarantined
    # row (4) is not kept.
    staged_tx(
        [
            {"_row_number": 1, "order_id": "O1"},
            {"_row_number": 2, "order_id": "O1"},
            {"_row_number": 3, "order_id": "O1", "product_id": "P2"},
            {"_row_number": 4, "order_id": "O3"},
        ],
        quarantined=[("f1", 4)],
    )
    tx_files([("f1", "f1.csv", 4)])
    customer_map([("C1", "C1")])
    run_sql(con, "core/transaction_lines")
    assert rows(
        "select _row_number, order_id, product_id from core.transaction_lines order by 1"
    ) == [
        (1, "O1", "P1"),
        (3, "O1", "P2"),
    ]


def test_transaction_lines_keep_identical_lines_keeps_the_repeat(
    con, staged_tx, tx_files, customer_map, rows
):
    # The same two identical O1 lines, from a source with keep_identical_lines: both kept.
    staged_tx(
        [
            {"_row_number": 1, "order_id": "O1", "keeps_identical_lines": True},
            {"_row_number": 2, "order_id": "O1", "keeps_identical_lines": True},
        ]
    )
    tx_files([("f1", "f1.csv", 2)])
    customer_map([("C1", "C1")])
    run_sql(con, "core/transaction_lines")
    assert rows("select _row_number, order_id from core.transaction_lines order by 1") == [
        (1, "O1"),
        (2, "O1"),
    ]


def test_transaction_lines_identical_rows_without_order_id(
    con, staged_tx, tx_files, customer_map, rows
):
    # Without an order id, two identical rows in one file are two purchases: both kept, as
    # the 1st and 2nd occurrence of one row key; a row differing only in a NULL position
    # (product NULL, channel 'P1' vs product 'P1', channel NULL) gets a key of its own.
    staged_tx(
        [
            {"_row_number": 1},
            {"_row_number": 2},
            {"_row_number": 3, "product_id": None, "channel": "P1"},
        ]
    )
    tx_files([("f1", "f1.csv", 3)])
    customer_map([("C1", "C1")])
    run_sql(con, "core/transaction_lines")
    got = rows("select _row_number, order_id from core.transaction_lines order by 1")
    assert [n for n, _ in got] == [1, 2, 3]
    keys = [re.fullmatch(r"row-([0-9a-f]{32})-(\d+)", k).groups() for _, k in got]
    assert keys[0][0] == keys[1][0] != keys[2][0]
    assert [k[1] for k in keys] == ["1", "2", "1"]


def test_transaction_lines_row_without_order_id_resent_in_a_later_file(
    con, staged_tx, tx_files, customer_map, rows
):
    # f1 has the same order-less row twice, f2 (later) once: f2's copy is the re-sent 1st
    # copy and replaces it; f1's 2nd copy has no later twin and stays.
    staged_tx(
        [
            {"_row_number": 1},
            {"_row_number": 2},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
            },
        ]
    )
    tx_files([("f1", "f1.csv", 2), ("f2", "f2.csv", 1)])
    customer_map([("C1", "C1")])
    run_sql(con, "core/transaction_lines")
    got = rows(
        "select _file_sha256, _row_number, order_id from core.transaction_lines order by 1, 2"
    )
    assert [(f, n, k[-2:]) for f, n, k in got] == [("f1", 2, "-2"), ("f2", 1, "-1")]


# -- core/transactions.sql ---------------------------------------------------------------


def test_transactions_orders_keyed_by_customer_and_order_id(con, table, rows):
    # O1 of C1 has two lines: summed, the earliest time, the first line's status and
    # channel. C2's O1 (an order id reused for another customer) is an order of its own.
    # O2 is a return (not a completed order); O3, a $0 completed order, still counts. An
    # order keeps the smallest source id its lines were delivered under.
    table(
        "core.transaction_lines",
        "_row_number bigint, customer_id varchar, order_id varchar, amount double, "
        "quantity decimal(18, 4), status varchar, currency varchar, channel varchar, "
        "payment_method varchar, order_at timestamp, source_customer_id varchar",
        [
            (
                2,
                "C1",
                "O1",
                2.5,
                Decimal("1"),
                "completed",
                "EUR",
                "app",
                "cash",
                datetime(2025, 1, 5, 13),
                "S1b",
            ),
            (
                1,
                "C1",
                "O1",
                7.25,
                Decimal("2"),
                "completed",
                "EUR",
                "web",
                "card",
                datetime(2025, 1, 5, 14),
                "S1a",
            ),
            (3, "C2", "O1", 4.0, Decimal("1"), "completed", "EUR", "web", "card", T, "S2"),
            (4, "C1", "O2", -5.0, Decimal("1"), "returned", "EUR", "web", "card", T, "S1a"),
            (
                5,
                "C1",
                "O3",
                0.0,
                Decimal("1"),
                "completed",
                None,
                None,
                None,
                datetime(2025, 1, 6, 23, 59),
                "S1b",
            ),
        ],
    )
    run_sql(con, "core/transactions")
    assert rows("select * from core.transactions order by customer_id, order_id") == [
        (
            "C1",
            "O1",
            datetime(2025, 1, 5, 13),
            date(2025, 1, 5),
            9.75,
            3.0,
            "completed",
            True,
            "EUR",
            "web",
            "card",
            2,
            "S1a",
        ),
        ("C1", "O2", T, date(2025, 1, 5), -5.0, 1.0, "returned", False, "EUR", "web", "card", 1)
        + ("S1a",),
        (
            "C1",
            "O3",
            datetime(2025, 1, 6, 23, 59),
            date(2025, 1, 6),
            0.0,
            1.0,
            "completed",
            True,
            None,
            None,
            None,
            1,
            "S1b",
        ),
        ("C2", "O1", T, date(2025, 1, 5), 4.0, 1.0, "completed", True, "EUR", "web", "card", 1)
        + ("S2",),
    ]


# -- core/customers.sql ------------------------------------------------------------------


def test_customers_survivorship_newest_non_null_value_wins(
    con, customer_records, customer_map, rows
):
    # C1 and C2 are one person (survivor C1). Per field the most recently updated record
    # that has a value wins: C2's newer e-mail and consent 'no', but C1's city, since C2's
    # is blank. Sign-up is the earliest, updated_at the latest. C3 is known only from an
    # order: a row with no profile, consent false, not in the customer master.
    customer_records(
        "core.customer_records",
        [
            {
                "customer_id": "C1",
                "email": "old@x",
                "city": "Berlin",
                "marketing_consent": True,
                "signup_at": datetime(2024, 1, 1),
                "updated_at": datetime(2025, 1, 1),
            },
            {
                "customer_id": "C2",
                "email": "new@x",
                "city": None,
                "marketing_consent": False,
                "signup_at": datetime(2024, 6, 1),
                "updated_at": datetime(2025, 3, 1),
            },
        ],
    )
    customer_map([("C1", "C1"), ("C2", "C1"), ("C3", "C3")])
    run_sql(con, "core/customers")
    assert rows("""
        select customer_id, email, city, marketing_consent, is_in_customer_master,
               source_record_count, signup_at, updated_at
        from core.customers order by 1""") == [
        ("C1", "new@x", "Berlin", False, True, 2, datetime(2024, 1, 1), datetime(2025, 3, 1)),
        ("C3", None, None, False, False, 0, None, None),
    ]


def test_customers_same_update_time_later_file_wins(con, customer_records, customer_map, rows):
    # Two records of C1 with the same updated_at, ingested in one run: the later file name
    # (c_02.csv) wins; without updated_at the sign-up date orders the records.
    customer_records(
        "core.customer_records",
        [
            {
                "_file_sha256": "zz",
                "_source_file": "c_01.csv",
                "_row_number": 1,
                "customer_id": "C1",
                "email": "a@x",
                "updated_at": T,
            },
            {
                "_file_sha256": "aa",
                "_source_file": "c_02.csv",
                "_row_number": 1,
                "customer_id": "C1",
                "email": "b@x",
                "updated_at": T,
            },
            {
                "_row_number": 2,
                "customer_id": "C2",
                "phone": "+1",
                "signup_at": datetime(2024, 2, 1),
            },
            {
                "_row_number": 3,
                "customer_id": "C2",
                "phone": "+2",
                "signup_at": datetime(2024, 1, 1),
            },
        ],
    )
    customer_map([("C1", "C1"), ("C2", "C2")])
    run_sql(con, "core/customers")
    assert rows("select customer_id, email, phone from core.customers order by 1") == [
        ("C1", "b@x", None),
        ("C2", None, "+1"),
    ]


# -- core/events.sql ---------------------------------------------------------------------


@pytest.fixture
def staged_events(table):
    def make(records: list[dict], quarantined: list[tuple] = ()) -> None:
        defaults = {
            "_file_sha256": "f1",
            "_source_file": "f1.csv",
            "_ingested_at": DAY1,
            "customer_id": "C1",
            "event_type": "page_view",
            "channel": "web",
            "event_at": T,
        }
        table("staging.events", EVENT_COLUMNS, _rows(EVENT_FIELDS, defaults, records))
        table("quarantine.events", QUARANTINE, quarantined)

    return make


def test_events_event_id_seen_again_latest_delivery_wins(con, staged_events, customer_map, rows):
    # E1 in f1 and again in f2 (a day later): f2's copy is kept. E2 is quarantined. Events
    # are keyed to the surviving customer (C1 -> C9).
    staged_events(
        [
            {"_row_number": 1, "event_id": "E1", "value": 1.0},
            {"_row_number": 2, "event_id": "E2"},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
                "event_id": "E1",
                "value": 2.0,
            },
        ],
        quarantined=[("f1", 2)],
    )
    customer_map([("C1", "C9")])
    run_sql(con, "core/events")
    assert rows("select * from core.events") == [
        ("f2", 1, "C9", "E1", "page_view", "web", 2.0, None, T, "C1")
    ]


def test_events_without_id_keyed_by_values_and_occurrence(con, staged_events, customer_map, rows):
    # Two identical id-less events in f1 are two events (occurrences 1 and 2); the same
    # event re-sent once in f2 replaces f1's first occurrence.
    staged_events(
        [
            {"_row_number": 1},
            {"_row_number": 2},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
            },
        ]
    )
    customer_map([("C1", "C1")])
    run_sql(con, "core/events")
    got = rows("select _file_sha256, _row_number, event_id from core.events order by 1, 2")
    assert [(f, n, re.fullmatch(r"evt-[0-9a-f]{32}-(\d+)", k).group(1)) for f, n, k in got] == [
        ("f1", 2, "2"),
        ("f2", 1, "1"),
    ]


def test_events_without_id_whose_missing_fields_differ_are_two_events(
    con, staged_events, customer_map, rows
):
    # One event has channel 'web' and no properties, the other no channel and properties
    # 'web': skipping NULLs while joining the values gave them one key, and the later
    # file's event replaced the earlier one.
    staged_events(
        [
            {"_row_number": 1, "channel": "web", "properties": None},
            {
                "_file_sha256": "f2",
                "_source_file": "f2.csv",
                "_ingested_at": DAY2,
                "_row_number": 1,
                "channel": None,
                "properties": "web",
            },
        ]
    )
    customer_map([("C1", "C1")])
    run_sql(con, "core/events")
    assert rows("select _file_sha256, channel, properties from core.events order by 1") == [
        ("f1", "web", None),
        ("f2", None, "web"),
    ]


# -- core/duplicate_rows.sql -------------------------------------------------------------


@pytest.fixture
def duplicate_inputs(table):
    """staging.*, quarantine.* and the kept core rows core/duplicate_rows.sql compares."""

    def make(tx, tx_quarantined, tx_kept, customers, customers_kept, events, events_kept):
        key = "_file_sha256 varchar, _row_number bigint"
        table("staging.transactions", key + ", order_id varchar, customer_id varchar", tx)
        table("quarantine.transactions", QUARANTINE, tx_quarantined)
        table(
            "core.transaction_lines",
            key + ", order_id varchar, source_customer_id varchar",
            tx_kept,
        )
        table("staging.customers", key, customers)
        table("quarantine.customers", QUARANTINE)
        table("core.customer_records", key, customers_kept)
        table("staging.events", key, events)
        table("quarantine.events", QUARANTINE)
        table("core.events", key, events_kept)

    return make


FIND_ALL = {"find_transactions": True, "find_customers": True, "find_events": True}


def test_duplicate_rows_reasons(con, duplicate_inputs, rows):
    # f1 row 2 repeats O1, whose kept line is in f1 itself; f1 row 3 is O2, kept from f2;
    # f1 row 4 has no order id and was not kept; f1 row 5 is quarantined, not a duplicate.
    # One customer record and one event were not kept either.
    duplicate_inputs(
        tx=[
            ("f1", 1, "O1", "C1"),
            ("f1", 2, "O1", "C1"),
            ("f1", 3, "O2", "C1"),
            ("f1", 4, None, "C1"),
            ("f1", 5, "O5", "C1"),
            ("f2", 1, "O2", "C1"),
        ],
        tx_quarantined=[("f1", 5)],
        tx_kept=[("f1", 1, "O1", "C1"), ("f2", 1, "O2", "C1")],
        customers=[("c1", 1), ("c1", 2)],
        customers_kept=[("c1", 1)],
        events=[("e1", 1), ("e2", 1)],
        events_kept=[("e2", 1)],
    )
    run_sql(con, "core/duplicate_rows", FIND_ALL)
    assert rows("select * from core.duplicate_rows order by all") == [
        ("customers", "c1", 2, "identical record delivered again"),
        ("events", "e1", 1, "event delivered again in a later file"),
        ("transactions", "f1", 2, "identical line repeated in the same file"),
        ("transactions", "f1", 3, "order re-delivered in a later file"),
        ("transactions", "f1", 4, "identical row delivered again in a later file"),
    ]


def test_duplicate_rows_skips_a_source_with_nothing_dropped(con, duplicate_inputs, rows):
    # find_transactions false (core kept every valid row, so build.py skips the search):
    # no transaction row is listed, even one that is missing from the kept lines.
    duplicate_inputs(
        tx=[("f1", 1, "O1", "C1")],
        tx_quarantined=[],
        tx_kept=[],
        customers=[("c1", 1)],
        customers_kept=[],
        events=[],
        events_kept=[],
    )
    run_sql(con, "core/duplicate_rows", FIND_ALL | {"find_transactions": False})
    assert rows("select source, _file_sha256, _row_number from core.duplicate_rows") == [
        ("customers", "c1", 1)
    ]
