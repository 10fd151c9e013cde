"""Rows in, rows out: sql/audit/file_reconciliation.sql on hand-made inputs (raw.files,
raw.rejected_rows and audit.erased_rows from sql/warehouse/bookkeeping.sql; the kept,
quarantined and duplicate rows keyed by file)."""

from __future__ import annotations

from pipelines.sqlrun import run_sql

KEY = "_file_sha256 varchar, _row_number bigint"


def test_file_reconciliation_counts_per_file_and_source(con, table, insert, rows):
    # Sha 'a' fed two sources. As transactions (5 read): 2 loaded + 1 quarantined + 1
    # rejected by the reader + 1 duplicate = balanced. As customers (3 read): only 2
    # loaded, one row unaccounted for: not balanced. Sha 'b', events (2 read): 1 loaded +
    # 1 erased = balanced.
    insert(
        "raw.files",
        "file_sha256, source, file_path, status, rows_read",
        [
            ("a", "transactions", "in/a.csv", "loaded", 5),
            ("a", "customers", "in/a.csv", "loaded", 3),
            ("b", "events", "in/b.csv", "loaded", 2),
        ],
    )
    table("core.transaction_lines", KEY, [("a", 1), ("a", 2)])
    table("core.customer_records", KEY, [("a", 1), ("a", 2)])
    table("core.events", KEY, [("b", 1)])
    table("quarantine.transactions", KEY, [("a", 3)])
    table("quarantine.customers", KEY)
    table("quarantine.events", KEY)
    insert("raw.rejected_rows", "source, _file_sha256, _row_number", [("transactions", "a", 4)])
    table(
        "core.duplicate_rows",
        "source varchar, _file_sha256 varchar, _row_number bigint, reason varchar",
        [("transactions", "a", 5, "identical line repeated in the same file")],
    )
    insert("audit.erased_rows", "source, file_sha256, rows", [("events", "b", 1)])
    run_sql(con, "audit/file_reconciliation", {"run_id": "r1"})
    assert rows("select * from audit.file_reconciliation") == [
        ("r1", "customers", "in/a.csv", "a", "loaded", 3, 2, 0, 0, 0, False),
        ("r1", "events", "in/b.csv", "b", "loaded", 2, 1, 0, 0, 1, True),
        ("r1", "transactions", "in/a.csv", "a", "loaded", 5, 2, 2, 1, 0, True),
    ]


def test_file_reconciliation_file_with_nothing_kept(con, table, insert, rows):
    # A file every row of which was quarantined (2 read, 2 quarantined) balances with zero
    # loaded; counts of another file's sha are not added to it.
    insert(
        "raw.files",
        "file_sha256, source, file_path, status, rows_read",
        [("a", "transactions", "a.csv", "loaded", 2), ("b", "transactions", "b.csv", "loaded", 1)],
    )
    table("core.transaction_lines", KEY, [("b", 1)])
    table("core.customer_records", KEY)
    table("core.events", KEY)
    table("quarantine.transactions", KEY, [("a", 1), ("a", 2)])
    table("quarantine.customers", KEY)
    table("quarantine.events", KEY)
    table("core.duplicate_rows", "source varchar, _file_sha256 varchar, _row_number bigint")
    run_sql(con, "audit/file_reconciliation", {"run_id": "r2"})
    assert rows(
        "select file_path, rows_read, rows_loaded, rows_quarantined, is_balanced "
        "from audit.file_reconciliation"
    ) == [("a.csv", 2, 0, 2, True), ("b.csv", 1, 1, 0, True)]


# -- audit/customer_id_changes.sql --------------------------------------------------------


def test_customer_id_changes_records_merges_and_splits_not_unchanged_ids(con, table, rows):
    # before: A and B were two customers, C held C and D; now B merged into A, and D split
    # off C into its own customer; E is new
    con.execute(
        "create temp table previous_customer_map as select * from (values "
        "('A', 'A'), ('B', 'B'), ('C', 'C'), ('D', 'C')) v(source_customer_id, customer_id)"
    )
    table(
        "core.customer_map",
        "source_customer_id varchar, customer_id varchar, match_rule varchar",
        [
            ("A", "A", "self"),
            ("B", "A", "email"),
            ("C", "C", "self"),
            ("D", "D", "self"),
            ("E", "E", "self"),
        ],
    )
    from pipelines.sqlrun import run_sql

    run_sql(con, "audit/customer_id_changes", {"run_id": "r2"})
    assert rows(
        "select run_id, previous_customer_id, customer_id, reason, source_customer_ids "
        "from audit.customer_id_changes order by 2"
    ) == [("r2", "B", "A", "merged", 1), ("r2", "C", "D", "split", 1)]
