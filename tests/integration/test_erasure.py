"""Erasure: a forgotten customer leaves no row and no byte behind, and stays out.

The tiny warehouse of tests/integration/fixtures/publish has one person under two ids (ZQX0042, and
ZQX0043 with the same e-mail) with transactions, a quarantined row, a blanked field and
events; distinctive strings make leftover bytes easy to find.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import stat
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from pipelines import erasure, files
from pipelines.config import load_settings
from pipelines.core import build as core
from pipelines.errors import CrmError, StepError
from pipelines.load import clean, ingest, quality
from pipelines.publish import exports
from pipelines.publish import serving as publish
from pipelines.sqlrun import run_sql
from pipelines.warehouse import connect_warehouse
from tests.helpers import run_to_core

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "publish"
PERSON = ("ZQX0042", "ZQX0043")
SECRETS = (b"ZQX0042", b"ZQX0043", b"erase-me.example", b"Xanthopoulos", b"ZQX-PHONE-999")
OTHERS = ("C001", "C002", "C003")


def add_models_and_marts(con: duckdb.DuckDBPyConnection) -> None:
    """Hand-made stand-ins for the models and marts steps (too slow for tiny data)."""
    con.execute("create schema if not exists models")
    con.execute(
        "create or replace table models.customer_scores as "
        "select customer_id, 0.5 as p_alive from core.customers"
    )
    con.execute("create schema if not exists marts")
    con.execute("""
        create or replace table marts.customer_360 as
        select customer_id, email, phone, full_name, birth_date, marketing_consent,
               'champions' as rfm_segment, 'strategic' as value_tier,
               'active' as lifecycle_stage, 'vip_care' as recommended_action,
               100.0 as predicted_clv, 'low' as churn_band,
               null::varchar as churn_reasons, null::date as expected_next_order_date
        from core.customers order by customer_id""")
    con.execute("comment on table marts.customer_360 is 'One row per customer.'")
    con.execute(
        "create or replace table marts.segment_summary as "
        "select 'champions' as segment, count(*) as customers from core.customers"
    )


# The erasure key of these tests (the operator's secret; it is never stored in the warehouse).
KEY = "test-erasure-key-0123456789abcdef-0001"


@pytest.fixture(autouse=True)
def erasure_key(monkeypatch):
    monkeypatch.setenv("CRM_ERASURE_KEY", KEY)
    monkeypatch.delenv("CRM_ERASURE_OLD_KEYS", raising=False)
    return KEY


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("warehouse")
    for f in FIXTURES.iterdir():
        shutil.copy(f, base)
    con = run_to_core(base / "crm.toml")
    add_models_and_marts(con)
    con.execute("checkpoint")
    con.close()
    return base


@pytest.fixture
def workdir(built, tmp_path) -> Path:
    """A private copy of the built warehouse and its config."""
    shutil.copytree(built, tmp_path / "w", symlinks=True)
    return tmp_path / "w"


@pytest.fixture
def settings(workdir):
    return load_settings(workdir / "crm.toml")


@pytest.fixture
def con(settings):
    connection = connect_warehouse(settings)
    yield connection
    connection.close()


def rows_mentioning(
    con, needles=("ZQX", "erase-me", "Xanthopoulos", "79 555 12 34", "+41795551234")
) -> dict[str, int]:
    """Rows of any table of the erasable schemas whose text contains a needle."""
    found = {}
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = current_database() and schema_name in "
        "('raw','staging','quarantine','core','models','marts','audit')"
    ).fetchall()
    for schema, table in tables:
        condition = " or ".join(f"lower(t::varchar) like '%{n.lower()}%'" for n in needles)
        n = con.execute(f"select count(*) from {schema}.{table} t where {condition}").fetchall()[0][
            0
        ]
        if n:
            found[f"{schema}.{table}"] = n
    return found


def byte_hits(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [s for s in SECRETS if s in data]


def rebuild_to_core(con, settings, run_id: str) -> None:
    """Staging, validation, core and the reconciliation table, as a run does after ingest."""
    clean.build_staging(con, settings)
    quality.validate_pending(con, settings, run_id)
    core.build_core_tables(con)
    run_sql(con, "audit/file_reconciliation", {"run_id": run_id})


def unbalanced_with_erased(con) -> list[tuple]:
    """Files where rows read != loaded + quarantined + duplicates + erased."""
    return con.execute("""
        select f.file_path, f.rows_read, f.rows_loaded, f.rows_quarantined, f.rows_duplicate,
               coalesce(e.rows, 0)
        from audit.file_reconciliation f
        left join (select file_sha256, sum(rows) as rows from audit.erased_rows group by all) e
          using (file_sha256)
        where f.rows_read <> f.rows_loaded + f.rows_quarantined + f.rows_duplicate
                             + coalesce(e.rows, 0)""").fetchall()


def test_the_fixture_plants_the_person_in_every_layer(con):
    found = rows_mentioning(con)
    for table in (
        "raw.transactions",
        "raw.customers",
        "raw.events",
        "staging.customers",
        "quarantine.transactions",
        "quarantine.field_issues",
        "core.customer_map",
        "core.identity_edges",
        "core.identity_clusters",
        "core.customers",
        "core.transaction_lines",
        "core.events",
        "models.customer_scores",
        "marts.customer_360",
        "raw.phone_numbers",
    ):
        assert table in found, table


def test_forgetting_a_source_id_erases_the_whole_person_everywhere(con, settings):
    con.execute(
        "create table models.new_feature as select customer_id, 1 as x from core.customers"
    )  # a table added later is covered too
    con.execute(
        "create table audit.row_notes as select _file_sha256, _row_number, "
        "'note' as note from raw.customers"
    )  # so is one keyed by lineage
    others_before = con.execute(
        "select count(*) from raw.transactions where customer_id in ('C001','C002','C003')"
    ).fetchall()[0][0]
    report = erasure.forget_customers(con, settings, ["ZQX0043"])  # not the survivor
    assert rows_mentioning(con) == {}
    assert report.not_found == ()
    assert report.source_ids == 2
    # raw: 3 transactions (one quarantined), 2 customer records, 2 events
    assert report.input_rows_erased == 7
    assert report.rows_deleted["raw.transactions"] == 3
    assert report.rows_deleted["models.new_feature"] == 1
    # the phone-normalisation cache: both records, each with its own formatting
    assert report.rows_deleted["raw.phone_numbers"] == 2
    assert report.rows_deleted["audit.row_notes"] == 2
    assert report.rows_deleted["quarantine.field_issues"] == 1
    assert (
        con.execute(
            "select count(*) from raw.transactions where customer_id in ('C001','C002','C003')"
        ).fetchall()[0][0]
        == others_before
    )
    assert con.execute("select count(*) from marts.customer_360").fetchall()[0][0] == 3
    assert con.execute(
        "select source, sum(rows) from audit.erased_rows group by all order by 1"
    ).fetchall() == [("customers", 2), ("events", 2), ("transactions", 3)]


def test_tombstones_are_keyed_hashes_never_the_values(con, settings):
    erasure.forget_customers(con, settings, ["ZQX0042"])
    # the key's prefix, derived independently of the code: HMAC-SHA256(key, label)
    prefix = hmac.new(KEY.encode(), b"crm tombstones v1", hashlib.sha256).hexdigest()
    key_id = hmac.new(KEY.encode(), b"crm tombstone key id v1", hashlib.sha256).hexdigest()[:16]
    stones = set(
        con.execute("select kind, value_sha256, key_id from audit.erasure_tombstones").fetchall()
    )

    def h(value: str) -> str:
        return hashlib.sha256((prefix + value).encode()).hexdigest()

    assert stones == {
        ("customer_id", h("ZQX0042"), key_id),
        ("customer_id", h("ZQX0043"), key_id),
        ("email", h("zebulon.quixotic@erase-me.example"), key_id),
        ("phone", h("+41795551234"), key_id),
    }
    # nothing the key could be rebuilt from is kept in the warehouse
    assert con.execute("select count(*) from audit.settings").fetchall()[0][0] == 0


def test_an_id_found_nowhere_is_reported_and_still_tombstoned(con, settings):
    report = erasure.forget_customers(con, settings, [" NOPE-1 "])
    assert report.not_found == ("NOPE-1",)
    assert report.rows_deleted == {} and report.tombstones == 1
    with pytest.raises(CrmError, match="at least one"):
        erasure.forget_customers(con, settings, ["  "])


def test_reconciliation_balances_when_erased_rows_are_counted(con, settings):
    erasure.forget_customers(con, settings, ["ZQX0042"])
    rebuild_to_core(con, settings, "run-2")
    assert rows_mentioning(con) == {}
    assert unbalanced_with_erased(con) == []
    plain = con.execute(
        "select count(*) from audit.file_reconciliation where rows_read <> "
        "rows_loaded + rows_quarantined + rows_duplicate"
    ).fetchall()[0][0]
    assert plain == 3, "without the erased rows no file balances: the formula must change"


def test_a_redelivered_export_does_not_bring_them_back(con, settings, workdir):
    erasure.forget_customers(con, settings, ["ZQX0042"])
    (workdir / "transactions_2.csv").write_text(
        "CustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice,Status\n"
        "ZQX0042,I4,2025-01-10 12:00:00,1,99.00,completed\n"
        "C001,I9,2025-07-05 10:00:00,1,10.00,completed\n"
        "ZQX0043,I10,2025-07-10 12:00:00,1,5.00,completed\n"
    )
    (workdir / "customers_2.csv").write_text(
        "CustomerID,Email,Phone,FullName,BirthDate,Country,SignupDate,MarketingOptIn,UpdatedAt\n"
        "NEW-77,ZEBULON.QUIXOTIC@erase-me.example,,Zeb Q,,CH,2025-07-01,yes,2025-07-01\n"
        "C004,dora@example.com,+41 79 555 12 34,Dora Delta,,CH,2025-07-01,yes,2025-07-01\n"
    )
    for source in settings.sources.values():
        ingest.ingest_source(con, source, "run-2", datetime.now())
    # left out as they were read (issue 17, item 5): never written to raw
    assert (
        con.execute(
            "select count(*) from raw.transactions where customer_id like 'ZQX%'"
        ).fetchall()[0][0]
        == 0
    )
    report = erasure.apply_tombstones(con, "run-2")
    assert report.input_rows_erased == 0  # nothing left to delete
    assert report.contact_matches == 2  # same e-mail under NEW-77, same phone under C004
    assert (
        con.execute(
            "select count(*) from raw.transactions where customer_id like 'ZQX%'"
        ).fetchall()[0][0]
        == 0
    )
    sha = files.file_sha256(workdir / "transactions_2.csv")
    assert (
        con.execute(
            "select sum(rows) from audit.erased_rows where file_sha256 = ? and "
            "reason = 'tombstone'",
            [sha],
        ).fetchall()[0][0]
        == 2
    )
    # a person may sign up again: kept unless contacts are matched on purpose
    assert (
        con.execute(
            "select count(*) from raw.customers where customer_id in ('NEW-77', 'C004')"
        ).fetchall()[0][0]
        == 2
    )
    rebuild_to_core(con, settings, "run-2")
    assert unbalanced_with_erased(con) == []
    strict = erasure.apply_tombstones(con, "run-3", match_contacts=True)
    assert strict.input_rows_erased == 2
    assert (
        con.execute(
            "select count(*) from raw.customers where customer_id in ('NEW-77', 'C004')"
        ).fetchall()[0][0]
        == 0
    )
    assert erasure.apply_tombstones(con, "run-4").input_rows_erased == 0


def test_apply_tombstones_without_any_erasure_changes_nothing(con):
    before = con.execute("select count(*) from raw.transactions").fetchall()[0][0]
    report = erasure.apply_tombstones(con, "run-2")
    assert (report.input_rows_erased, report.contact_matches) == (0, 0)
    assert con.execute("select count(*) from raw.transactions").fetchall()[0][0] == before
    assert con.execute("select count(*) from audit.erased_rows").fetchall()[0][0] == 0


def test_rejected_records_that_mention_the_person_are_erased(con, settings):
    sha = con.execute("select file_sha256 from raw.files where source = 'transactions'").fetchall()[
        0
    ][0]
    con.execute(
        "insert into raw.rejected_rows values ('transactions', ?, 'x.csv', 100, 101, "
        "'expected 6 fields, found 3', 'ZQX0042;I99;oops', now(), 'run-1')",
        [sha],
    )
    con.execute(
        "insert into raw.rejected_rows values ('transactions', ?, 'x.csv', 101, 102, "
        "'expected 6 fields, found 3', 'C001;I98;oops', now(), 'run-1')",
        [sha],
    )
    erasure.forget_customers(con, settings, ["ZQX0042"])
    assert con.execute(
        "select raw_line from raw.rejected_rows where raw_line is not null"
    ).fetchall() == [("C001;I98;oops",)]
    # after the erasure, a rejected record with the e-mail is caught by its hash
    con.execute(
        "insert into raw.rejected_rows values ('transactions', ?, 'x.csv', 102, 103, "
        "'bad', '\"Zebulon.Quixotic@erase-me.example\",x', now(), 'run-2')",
        [sha],
    )
    assert erasure.apply_tombstones(con, "run-2").input_rows_erased == 1
    assert (
        con.execute("select count(*) from raw.rejected_rows where raw_line is not null").fetchall()[
            0
        ][0]
        == 1
    )


def test_compaction_is_what_removes_the_bytes(con, settings):
    path = settings.warehouse.path
    serving = publish.publish_serving_database(con, settings, "run-1")
    con.execute("checkpoint")
    assert byte_hits(path) and byte_hits(serving), "the strings must be findable at first"
    erasure.forget_customers(con, settings, ["ZQX0042"])
    con.execute("checkpoint")
    con.close()
    # deleted rows stay readable in a DuckDB file: without compaction the erasure fails
    assert byte_hits(path)
    erasure.compact_database(path)
    assert byte_hits(path) == []
    again = connect_warehouse(settings)
    try:
        publish.publish_serving_database(again, settings, "run-2")
    finally:
        again.close()
    assert byte_hits(serving) == []
    assert not list(path.parent.glob(".*compact-*"))


def test_compaction_keeps_every_other_table_row_and_comment(con, settings):
    erasure_tables = (
        "where not (schema_name = 'audit' and table_name in ('settings', "
        "'erasure_tombstones', 'erased_rows'))"
    )
    before = con.execute(
        "select schema_name, table_name, estimated_size, comment "
        f"from duckdb_tables() {erasure_tables} order by 1, 2"
    ).fetchall()
    counts = {
        f"{s}.{t}": con.execute(f"select count(*) from {s}.{t}").fetchall()[0][0]
        for s, t, _, _ in before
    }
    with pytest.raises(StepError, match="open elsewhere"):
        erasure.compact_database(settings.warehouse.path)  # still open here: refused
    con.close()
    settings.warehouse.path.chmod(0o600)
    erasure.compact_database(settings.warehouse.path)
    assert stat.S_IMODE(settings.warehouse.path.stat().st_mode) == 0o600
    after = connect_warehouse(settings)
    try:
        assert [
            r[:2] + r[3:]
            for r in after.execute(
                "select schema_name, table_name, estimated_size, comment from duckdb_tables() "
                f"{erasure_tables} order by 1, 2"
            ).fetchall()
        ] == [r[:2] + r[3:] for r in before]
        for name, n in counts.items():
            assert after.execute(f"select count(*) from {name}").fetchall()[0][0] == n, name
    finally:
        after.close()


def test_forget_removes_the_person_from_database_serving_copy_and_exports(settings, con):
    out = exports.write_exports(con, settings, date(2025, 6, 30), "run-1")
    assert "ZQX0042" in (out.directory / "list_vip_care.csv").read_text()
    publish.publish_serving_database(con, settings, "run-1")
    con.close()
    report = erasure.forget(settings, ["ZQX0043"])
    assert report.compacted and report.serving_published == settings.warehouse.serving_path
    assert report.export_rows_removed == {"2025-06-30": 3}  # champions, vip care, follow-up
    files = [settings.warehouse.path, settings.warehouse.serving_path, *out.directory.iterdir()]
    assert {str(f): byte_hits(f) for f in files} == {str(f): [] for f in files}
    for f in out.directory.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    serving = duckdb.connect(str(settings.warehouse.serving_path), read_only=True)
    try:
        assert serving.execute(
            "select customer_id from marts.customer_360 order by 1"
        ).fetchall() == [(c,) for c in OTHERS]
    finally:
        serving.close()
    # running it again is harmless (e.g. to finish an interrupted erasure)
    again = erasure.forget(settings, ["ZQX0043"])
    assert again.not_found == ("ZQX0043",) and again.tombstones == 0


def test_forget_refuses_while_a_run_holds_the_warehouse(settings, con):
    import subprocess
    import sys

    con.close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb, time; c = duckdb.connect(sys.argv[1]); "
            "print('open', flush=True); time.sleep(60)",
            str(settings.warehouse.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        from pipelines.errors import WarehouseBusyError

        with pytest.raises(
            WarehouseBusyError, match=rf"held by another process \(PID {holder.pid}\)"
        ):
            erasure.forget(settings, ["ZQX0042"])
    finally:
        holder.kill()
        holder.wait()


def test_id_columns_are_found_by_name():
    assert erasure.id_columns(
        [
            "customer_id",
            "source_customer_id",
            "customer_id_a",
            "cluster_id",
            "customer_count",
            "order_id",
            "email",
        ]
    ) == ["customer_id", "source_customer_id", "customer_id_a", "cluster_id"]


# --- unknown ids, and an erasure that stops half done (issue 17, items 3 and 4) ----------------


def tombstone_count(settings) -> int:
    con = connect_warehouse(settings)
    try:
        return con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]
    finally:
        con.close()


def test_forget_refuses_an_id_never_seen_unless_forced(settings, con):
    con.close()
    before = tombstone_count(settings)
    with pytest.raises(erasure.UnknownIdsError) as refused:
        erasure.forget(settings, ["ZQX0043", "ZQX9999"])
    message = str(refused.value)
    assert "ZQX9999" in message and "ZQX0043" not in message
    assert "Nothing was changed" in message and "--force" in message
    assert tombstone_count(settings) == before
    assert erasure.pending_erasure(settings) is None
    forced = erasure.forget(settings, ["ZQX9999"], force=True)
    assert forced.not_found == ("ZQX9999",) and forced.tombstones == 1
    # an id forgotten before is not unknown: repeating an erasure needs no --force
    assert erasure.forget(settings, ["ZQX9999"]).tombstones == 0


class DiskFullOnRename:
    """``os`` for the compaction module: the rename of the compacted file fails as on a
    full disk (the copy itself fits)."""

    def __getattr__(self, name):
        import os

        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        raise OSError(28, "No space left on device")


def test_an_erasure_stopped_half_done_is_recorded_and_the_next_command_finishes_it(
    settings, con, monkeypatch
):
    from pipelines import erasure_compact

    out = exports.write_exports(con, settings, date(2025, 6, 30), "run-1")
    publish.publish_serving_database(con, settings, "run-1")
    con.close()
    monkeypatch.setattr(erasure_compact, "os", DiskFullOnRename())
    with pytest.raises(StepError) as stopped:
        erasure.forget(settings, ["ZQX0043"])
    message = str(stopped.value)
    assert "deleted the customers' rows" in message and "No space left" in message
    assert "may still hold the customers" in message and "finishes it first" in message
    pending = erasure.pending_erasure(settings)
    assert pending is not None and pending["rows_deleted"] is True
    # the person is still in the outputs and the file's bytes until the erasure finishes
    assert byte_hits(settings.warehouse.serving_path)
    # a compaction killed mid-copy leaves its file beside the database
    leftover = settings.warehouse.path.with_name(f".{settings.warehouse.path.name}.compact-dead")
    leftover.write_bytes(b"ZQX0043 erase-me")
    monkeypatch.setattr(erasure_compact, "os", __import__("os"))

    finished = erasure.finish_pending_erasure(settings)
    assert finished and "is finished now" in finished
    files_ = [settings.warehouse.path, settings.warehouse.serving_path, *out.directory.iterdir()]
    assert {str(f): byte_hits(f) for f in files_} == {str(f): [] for f in files_}
    assert not leftover.exists()
    assert erasure.pending_erasure(settings) is None
    assert erasure.finish_pending_erasure(settings) is None


def test_an_erasure_that_may_not_have_deleted_blocks_every_command_until_it_is_rerun(settings, con):
    con.close()
    erasure._mark_pending(settings, "forget-killed", deleted=False)
    with pytest.raises(CrmError, match="Run the same crm forget again"):
        erasure.finish_pending_erasure(settings)
    from pipelines.steps import open_run

    with pytest.raises(CrmError, match="forget-killed"):
        with open_run(settings.config_path):
            pass
    report = erasure.forget(settings, ["ZQX0043"])
    assert report.source_ids > 0 and erasure.pending_erasure(settings) is None


# --- keyed tombstones (issue 17, item 6) --------------------------------------------------------


def brute_force(con, prefixes: list[str], first: int, last: int) -> set[str]:
    """What someone holding the database file finds: every id from ``first`` to ``last``
    (seven digits) hashed under each candidate prefix, matched against the tombstones."""
    found: set[str] = set()
    for prefix in prefixes:
        found |= {
            r[0]
            for r in con.execute(
                """select v from (select lpad(range::varchar, 7, '0') as v
                                  from range($first, $last + 1))
                where sha256($p || v) in (select value_sha256 from audit.erasure_tombstones)""",
                {"p": prefix, "first": first, "last": last},
            ).fetchall()
        }
    return found


def test_without_the_key_the_tombstones_do_not_reveal_a_seven_digit_id(con, settings):
    erasure.forget_customers(con, settings, ["4711042"])  # found nowhere: tombstoned anyway
    # the attacker's candidates: no prefix, and every value the warehouse stores beside the
    # tombstones (where the old scheme kept its salt); the range is generous to them (they
    # are told the first digit: 1M ids, a tenth of the space, to keep the test short)
    stored = [r[0] for r in con.execute("select value from audit.settings").fetchall()]
    assert brute_force(con, ["", *stored], 4_000_000, 4_999_999) == set()
    # the same search with the key's prefix finds it: the search itself works
    prefix = erasure.key_ring(settings).current.prefix
    assert brute_force(con, [prefix], 4_000_000, 4_999_999) == {"4711042"}


def redeliver(workdir: Path, settings, con, run_id: str, ring=None) -> int:
    """An old export sent again (a new file name), ingested, tombstones applied, as the
    ingest step does; returns the input rows erased by this run (audit.erased_rows)."""
    (workdir / f"transactions_{run_id}.csv").write_text(
        "CustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice,Status\n"
        f"ZQX0042,I4-{run_id},2025-01-10 12:00:00,1,99.00,completed\n"
        f"C001,I9-{run_id},2025-07-05 10:00:00,1,10.00,completed\n"
        f"C002,I10-{run_id},2025-07-10 12:00:00,1,5.00,completed\n"
    )  # a new file each time (the run id in the order ids): not a re-delivery
    ring = ring or erasure.key_ring(settings)
    ingest.ingest_source(con, settings.sources["transactions"], run_id, datetime.now(), ring=ring)
    erasure.apply_tombstones(con, run_id, ring=ring)
    return con.execute(
        "select coalesce(sum(rows), 0) from audit.erased_rows where run_id = ?", [run_id]
    ).fetchall()[0][0]


def test_rotating_the_key_keeps_old_erasures_effective(con, settings, workdir, monkeypatch):
    erasure.forget_customers(con, settings, ["ZQX0042"])  # under KEY
    new_key = "rotated-erasure-key-fedcba9876543210-0002"
    monkeypatch.setenv("CRM_ERASURE_KEY", new_key)
    monkeypatch.setenv("CRM_ERASURE_OLD_KEYS", KEY)
    erasure.forget_customers(con, settings, ["C001"])  # under the new key
    ids = dict(
        con.execute("select key_id, count(*) from audit.erasure_tombstones group by all").fetchall()
    )
    assert len(ids) == 2  # one key id per key
    assert redeliver(workdir, settings, con, "run-2") == 2  # ZQX0042 (old key), C001 (new)
    assert con.execute(
        "select customer_id from raw.transactions where _run_id = 'run-2'"
    ).fetchall() == [("C002",)]
    # the retired key dropped while its tombstones remain: refused, naming the key id
    monkeypatch.delenv("CRM_ERASURE_OLD_KEYS")
    old_id = erasure.key_ring(settings, {"CRM_ERASURE_KEY": KEY}).current.key_id
    with pytest.raises(erasure.MissingKeyError, match=old_id) as refused:
        redeliver(workdir, settings, con, "run-3")
    assert refused.value.exit_code == 2 and "CRM_ERASURE_OLD_KEYS" in str(refused.value)
    # forgetting the person's ids again (old key back in the ring) moves those tombstones
    # to the new key; their e-mail and phone tombstones cannot be re-made from ids
    monkeypatch.setenv("CRM_ERASURE_OLD_KEYS", KEY)
    erasure.forget_customers(con, settings, ["ZQX0042", "ZQX0043"])
    assert con.execute(
        "select kind from audit.erasure_tombstones where key_id = ? order by 1", [old_id]
    ).fetchall() == [("email",), ("phone",)]


def test_without_a_key_forget_changes_nothing_and_a_warehouse_without_tombstones_runs(
    settings, con, monkeypatch
):
    monkeypatch.delenv("CRM_ERASURE_KEY")
    before = con.execute("select count(*) from raw.transactions").fetchall()[0][0]
    # no tombstones: ingest and apply need no key
    assert erasure.apply_tombstones(con, "run-2").input_rows_erased == 0
    with pytest.raises(erasure.MissingKeyError, match="CRM_ERASURE_KEY") as refused:
        erasure.forget_customers(con, settings, ["ZQX0042"])
    assert "Nothing was changed" in str(refused.value) and refused.value.exit_code == 2
    assert con.execute("select count(*) from raw.transactions").fetchall()[0][0] == before
    assert con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0] == 0
    con.close()
    with pytest.raises(erasure.MissingKeyError):
        erasure.forget(settings, ["ZQX0042"])
    assert erasure.pending_erasure(settings) is None


def test_legacy_salted_tombstones_keep_matching_until_forgotten_again(
    con, settings, workdir, monkeypatch
):
    # what the salted scheme wrote: a salt in audit.settings, sha256(salt || id), no key id
    con.execute("insert into audit.settings values ('erasure_salt', 'legacy-salt-0001')")
    con.execute(
        "insert into audit.erasure_tombstones (kind, value_sha256, erased_at) "
        "values ('customer_id', sha256('legacy-salt-0001' || 'ZQX0042'), now())"
    )
    monkeypatch.delenv("CRM_ERASURE_KEY")  # legacy tombstones alone need no key
    # ZQX0042's rows, the re-sent one among them, go (the legacy tombstone matched)
    assert redeliver(workdir, settings, con, "run-2") > 1
    zqx = "select count(*) from raw.transactions where customer_id = 'ZQX0042'"
    assert con.execute(zqx).fetchall() == [(0,)]
    monkeypatch.setenv("CRM_ERASURE_KEY", KEY)
    erasure.forget_customers(con, settings, ["ZQX0042"])  # accepted: forgotten before
    assert con.execute(
        "select count(*) from audit.erasure_tombstones where key_id = 'salt-v0'"
    ).fetchall() == [(0,)]
    assert con.execute("select count(*) from audit.settings").fetchall() == [(0,)]
    assert redeliver(workdir, settings, con, "run-3") == 1  # now keyed
    assert con.execute(zqx).fetchall() == [(0,)]


# --- re-sent rows never reach a written page (issue 17, item 5) ---------------------------------


def test_a_resent_export_of_a_forgotten_person_leaves_no_byte_in_the_database_or_wal(
    settings, con, workdir
):
    con.close()
    erasure.forget(settings, ["ZQX0042"])  # the whole person (ZQX0043 too), compacted
    assert byte_hits(settings.warehouse.path) == []
    # the old exports sent again: the same files, copies under new names (same content:
    # known by their sha256), and a re-export (rows in another order, so a new file, and
    # a broken line that only the row-by-row reader can quarantine)
    for name in ("transactions.csv", "customers.csv", "events.jsonl"):
        lines = (FIXTURES / name).read_text().splitlines()
        stem, ext = name.split(".")
        (workdir / f"{stem}_copy.{ext}").write_text((FIXTURES / name).read_text())
        header, body = ([lines[0]], lines[1:]) if ext == "csv" else ([], lines)
        extra = ["ZQX0042;I99;oops"] if stem == "transactions" else []
        (workdir / f"{stem}_reexport.{ext}").write_text(
            "\n".join(header + body[::-1] + extra) + "\n"
        )
    again = connect_warehouse(settings)
    try:
        ring = erasure.key_ring(settings)
        reports = []
        for source in settings.sources.values():
            reports += ingest.ingest_source(again, source, "run-2", datetime.now(), ring=ring)
        erasure.apply_tombstones(again, "run-2", ring=ring)
        wal = settings.warehouse.path.with_name(settings.warehouse.path.name + ".wal")
        assert wal.exists() and byte_hits(wal) == []  # before the checkpoint: in the WAL
        read = {Path(r.path).name: r.rows_read for r in reports if r.status == "loaded"}
        assert read == {
            "transactions_reexport.csv": 9,
            "customers_reexport.csv": 5,
            "events_reexport.jsonl": 4,
        }
        erased = dict(
            again.execute(
                "select source, sum(rows) from audit.erased_rows where run_id = 'run-2' "
                "and reason = 'tombstone' group by all"
            ).fetchall()
        )
        # ZQX0042/43: 3 transactions, 2 customer records, 2 events; the broken line is
        # quarantined without its text (CSV rejects keep no raw_line)
        assert erased == {"transactions": 3, "customers": 2, "events": 2}
        rebuild_to_core(again, settings, "run-2")
        assert unbalanced_with_erased(again) == []
        assert rows_mentioning(again) == {}
        again.execute("checkpoint")
    finally:
        again.close()
    assert byte_hits(settings.warehouse.path) == []
