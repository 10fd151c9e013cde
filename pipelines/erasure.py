"""Erasure ("right to be forgotten"): delete a person from every layer and keep them out.

:func:`forget` is the whole procedure behind ``crm forget CUSTOMER_ID...``:

1. :func:`forget_customers` resolves each given id (a surviving ``customer_id`` or any
   source id) to every source id of that person via ``core.customer_map``, and in one
   transaction deletes their rows from every table of raw, staging, quarantine, core,
   models, marts and audit: rows whose id column (:func:`id_columns`) holds one of the ids,
   and rows that point at an erased input row by lineage (``_file_sha256``,
   ``_row_number``: quarantine.field_issues, core.duplicate_rows, ...). Tables are found
   through the catalog, so tables added later are covered. Erased input rows are counted
   per file in ``audit.erased_rows``; the person is remembered only as salted sha256
   hashes in ``audit.erasure_tombstones``.
2. :func:`compact_database` rewrites the working database into a new file: DuckDB neither
   shrinks nor zeroes freed blocks, so the deleted values would otherwise stay readable in
   the file.
3. The serving database is published again (a fresh file, see ``pipelines/publish/serving.py``).
4. Every export directory is rewritten without the person.

:func:`apply_tombstones`, called right after ingest on every run, deletes newly ingested
raw rows of tombstoned ids, so a re-sent export does not bring the person back.

What stays outside the warehouse and needs the operator: the source export files
themselves, HTML reports, backups, and copies BI users made.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.errors import CrmError, StepError
from pipelines.publish.serving import (
    copy_permissions,
    fsync_dir,
    fsync_file,
    publish_serving_database,
)
from pipelines.sqlrun import ensure_bookkeeping_tables

log = logging.getLogger(__name__)

ERASABLE_SCHEMAS = ("raw", "staging", "quarantine", "core", "models", "marts", "audit")
# Columns that hold a customer id besides *customer_id*: the identity cluster id is the
# smallest customer id of the cluster.
EXTRA_ID_COLUMNS = frozenset({"cluster_id"})
LINEAGE_COLUMNS = ("_file_sha256", "_row_number")
# The erasure's own bookkeeping holds no personal data and is never purged.
ERASURE_TABLES = frozenset(
    {("audit", "settings"), ("audit", "erasure_tombstones"), ("audit", "erased_rows")}
)
SALT_KEY = "erasure_salt"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


@dataclass(frozen=True)
class ForgetReport:
    """What an erasure did. Counts only: the report may be logged."""

    requested: int
    not_found: tuple[str, ...]  # given ids that matched no row anywhere
    source_ids: int  # source customer ids erased (all ids of the people found)
    rows_deleted: Mapping[str, int]  # "schema.table" -> rows
    input_rows_erased: int  # raw input rows (incl. rejected records), as in audit.erased_rows
    tombstones: int  # new tombstones written
    compacted: bool = False
    serving_published: Path | None = None
    export_rows_removed: Mapping[str, int] = field(default_factory=dict)  # as_of -> rows


@dataclass(frozen=True)
class TombstoneReport:
    """What :func:`apply_tombstones` removed after an ingest."""

    input_rows_erased: int
    rows_by_file: Mapping[str, int]
    contact_matches: int  # raw customer records of untombstoned ids with an erased e-mail/phone


# --- bookkeeping tables -------------------------------------------------------------------


def ensure_erasure_tables(con: duckdb.DuckDBPyConnection) -> str:
    """Create the erasure's audit tables (idempotent); returns the warehouse's salt.

    - ``audit.settings(key, value)``: holds the per-warehouse random salt.
    - ``audit.erasure_tombstones(kind, value_sha256, erased_at)``: kind is customer_id,
      email or phone; value_sha256 = sha256(salt || normalised value).
    - ``audit.erased_rows(run_id, source, file_sha256, rows, reason, erased_at)``: input
      rows removed per file, for reconciliation (read = loaded + quarantined + duplicates
      + erased).
    """
    ensure_bookkeeping_tables(con)
    salt = con.execute("select value from audit.settings where key = ?", [SALT_KEY]).fetchall()
    if salt:
        return salt[0][0]
    value = secrets.token_hex(32)
    con.execute("insert into audit.settings values (?, ?)", [SALT_KEY, value])
    return value


def normalise_id(value: str) -> str:
    """Customer ids as ingest stores them: trimmed text (NFC), case and zeros kept."""
    return unicodedata.normalize("NFC", str(value)).strip()


# SQL twins of the normalisations, for hashing inside DuckDB.
_ID_SQL = "nfc_normalize(trim({}))"
_EMAIL_SQL = "lower(trim(nfc_normalize({})))"


def _hash_sql(expr: str) -> str:
    return f"sha256($salt || {expr})"


# --- discovering where customers live ------------------------------------------------------


def id_columns(columns: Iterable[str]) -> list[str]:
    """Columns that hold a customer id: customer_id, *_customer_id, customer_id_*,
    cluster_id."""
    return [
        c
        for c in columns
        if c == "customer_id"
        or c.endswith("_customer_id")
        or c.startswith("customer_id_")
        or c in EXTRA_ID_COLUMNS
    ]


def _tables(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, list[str]]]:
    """(schema, table, columns) of every base table of the erasable schemas."""
    rows = con.execute(
        "select table_schema, table_name, list(column_name order by ordinal_position) "
        "from information_schema.columns c "
        "where table_catalog = current_database() and table_schema in "
        "(select unnest($schemas::varchar[])) and exists (select 1 from "
        "information_schema.tables t where t.table_catalog = c.table_catalog and "
        "t.table_schema = c.table_schema and t.table_name = c.table_name and "
        "t.table_type = 'BASE TABLE') group by all order by 1, 2",
        {"schemas": list(ERASABLE_SCHEMAS)},
    ).fetchall()
    return [(s, t, cols) for s, t, cols in rows if (s, t) not in ERASURE_TABLES]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _has_table(con, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "select 1 from information_schema.tables where table_catalog = current_database() "
            "and table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchall()
    )


def _raw_sources(tables) -> list[str]:
    """raw.<source> tables: input rows with a customer id and lineage."""
    return [
        t
        for s, t, cols in tables
        if s == "raw" and "customer_id" in cols and set(LINEAGE_COLUMNS) <= set(cols)
    ]


# --- forgetting -----------------------------------------------------------------------------


def resolve_source_ids(
    con: duckdb.DuckDBPyConnection, customer_ids: list[str]
) -> tuple[set[str], set[str]]:
    """Every source id of the people behind ``customer_ids``, and the ids found nowhere.

    A given id may be a surviving customer_id or a source id; through core.customer_map
    the whole cluster is taken (all records of the same person).
    """
    given = sorted({normalise_id(i) for i in customer_ids if normalise_id(i)})
    ids = set(given)
    if _has_table(con, "core", "customer_map"):
        rows = con.execute(
            """
            with survivors as (
                select distinct customer_id from core.customer_map
                where source_customer_id in (select unnest($ids::varchar[]))
                   or customer_id in (select unnest($ids::varchar[]))
            )
            select source_customer_id from core.customer_map
            where customer_id in (select customer_id from survivors)
            union
            select customer_id from survivors""",
            {"ids": given},
        ).fetchall()
        ids |= {r[0] for r in rows}
    found: set[str] = set()
    for schema, table, cols in _tables(con):
        for col in id_columns(cols):
            found |= {
                r[0]
                for r in con.execute(
                    f"select distinct {_q(col)} from {_q(schema)}.{_q(table)} "
                    f"where {_q(col)} in (select unnest($ids::varchar[]))",
                    {"ids": sorted(ids)},
                ).fetchall()
            }
    return ids, set(given) - found


def _exclusive_contacts(con, ids: set[str]) -> tuple[set[str], set[str]]:
    """E-mails and phones of these ids that no other customer id uses.

    A shared address (a family or office mailbox, a placeholder) is not erased from other
    people's rows, exports or rejected records.
    """
    records = []
    for schema, table in (
        ("raw", "customers"),
        ("staging", "customers"),
        ("core", "customer_records"),
    ):
        if _has_table(con, schema, table):
            cols = {
                r[0]
                for r in con.execute(
                    "select column_name from information_schema.columns where table_catalog = "
                    "current_database() and table_schema = ? and table_name = ?",
                    [schema, table],
                ).fetchall()
            }
            phone = "phone" if "phone" in cols else "null"
            email = "email" if "email" in cols else "null"
            records.append(
                f"select customer_id, {_EMAIL_SQL.format(email)} as email, "
                f"{phone}::varchar as phone from {schema}.{table}"
            )
    if not records:
        return set(), set()
    rows = con.execute(
        f"""
        with records as ({" union all ".join(records)}),
        mine as (select * from records where customer_id in (select unnest($ids::varchar[])))
        select 'email', email from mine where email is not null
          and email not in (select email from records where email is not null
                            and customer_id not in (select unnest($ids::varchar[])))
        union
        select 'phone', phone from mine where phone is not null
          and phone not in (select phone from records where phone is not null
                            and customer_id not in (select unnest($ids::varchar[])))""",
        {"ids": sorted(ids)},
    ).fetchall()
    emails = {v for k, v in rows if k == "email"}
    # raw phones are as delivered; keep only E.164 forms (staging/core) for tombstones
    phones = {v for k, v in rows if k == "phone" and _E164.fullmatch(v)}
    return emails, phones


def _rejected_matches(con, ids: set[str], emails: set[str]) -> None:
    """Add raw.rejected_rows records that mention an id (as a whole field) or an e-mail
    to ``_erase_lineage``: the reader could not split them, so they have no customer_id."""
    if not _has_table(con, "raw", "rejected_rows") or not (ids or emails):
        return
    con.execute(
        """
        insert into _erase_lineage
        select distinct source, _file_sha256, _row_number from raw.rejected_rows r
        where raw_line is not null and (
            list_has_any(regexp_split_to_array(raw_line, '[,;|\t"'' ]+'),
                         $ids::varchar[])
            or list_has_any(regexp_split_to_array(lower(raw_line), '[,;|\t"'' <>]+'),
                            $emails::varchar[]))""",
        {"ids": sorted(ids), "emails": sorted(emails)},
    )


def _purge(con, ids: set[str], reason: str, run_id: str) -> tuple[dict[str, int], int]:
    """Delete the rows of ``ids`` and of the input rows in ``_erase_lineage`` everywhere.

    Records input rows per file in audit.erased_rows. Returns rows deleted per table and
    input rows erased.
    """
    con.execute(
        """
        insert into audit.erased_rows
        select $run_id, source, _file_sha256, count(*), $reason, $now
        from (select distinct * from _erase_lineage) group by all""",
        {
            "run_id": run_id,
            "reason": reason,
            "now": datetime.now(UTC).replace(tzinfo=None),
        },
    )
    erased = con.execute(
        "select count(*) from (select distinct _file_sha256, _row_number from _erase_lineage)"
    ).fetchall()[0][0]
    deleted: dict[str, int] = {}
    for schema, table, cols in _tables(con):
        conditions = [f"{_q(c)} in (select unnest($ids::varchar[]))" for c in id_columns(cols)]
        params: dict = {"ids": sorted(ids)} if conditions else {}
        if set(LINEAGE_COLUMNS) <= set(cols):
            conditions.append(
                "(_file_sha256, _row_number) in "
                "(select (_file_sha256, _row_number) from _erase_lineage)"
            )
        if not conditions:
            continue
        n = con.execute(
            f"delete from {_q(schema)}.{_q(table)} where " + " or ".join(conditions), params
        ).fetchall()[0][0]
        if n:
            deleted[f"{schema}.{table}"] = n
    return deleted, erased


def _new_lineage_table(con) -> None:
    con.execute(
        "create or replace temp table _erase_lineage (source varchar, "
        "_file_sha256 varchar, _row_number bigint)"
    )


def forget_customers(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    customer_ids: list[str],
    run_id: str | None = None,
) -> ForgetReport:
    """Delete every row of the people behind ``customer_ids`` and tombstone them.

    One transaction: either everything of these people is deleted and tombstoned, or
    nothing. The freed bytes stay in the file until :func:`compact_database`.
    """
    return _forget(con, customer_ids, run_id)[0]


def _forget(
    con: duckdb.DuckDBPyConnection, customer_ids: list[str], run_id: str | None
) -> tuple[ForgetReport, set[str], set[str]]:
    """:func:`forget_customers`, also returning the erased source ids and e-mails (needed
    to clean the export files after the database no longer knows them)."""
    run_id = run_id or f"forget-{uuid.uuid4().hex[:12]}"
    if not customer_ids or not any(normalise_id(i) for i in customer_ids):
        raise CrmError("Give at least one customer id to forget.")
    con.execute("begin transaction")
    try:
        salt = ensure_erasure_tables(con)
        ids, not_found = resolve_source_ids(con, customer_ids)
        ids -= not_found  # found nowhere: nothing to delete, but tombstoned all the same
        emails, phones = _exclusive_contacts(con, ids)
        tables = _tables(con)
        _new_lineage_table(con)
        for source in _raw_sources(tables):
            con.execute(
                f"insert into _erase_lineage select $source, _file_sha256, "
                f"_row_number from raw.{_q(source)} "
                f"where customer_id in (select unnest($ids::varchar[]))",
                {"source": source, "ids": sorted(ids)},
            )
        _rejected_matches(con, ids, emails)
        cached_phones = _purge_phone_cache(con, ids)
        deleted, erased = _purge(con, ids, "forget", run_id)
        if cached_phones:
            deleted = {**deleted, "raw.phone_numbers": cached_phones}
        tombstones = _write_tombstones(con, salt, ids | not_found, emails, phones)
        con.execute("drop table _erase_lineage")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    log.info(
        "forget: %d source ids, %d rows deleted, %d input rows erased",
        len(ids),
        sum(deleted.values()),
        erased,
    )
    report = ForgetReport(
        requested=len({normalise_id(i) for i in customer_ids}),
        not_found=tuple(sorted(not_found)),
        source_ids=len(ids),
        rows_deleted=deleted,
        input_rows_erased=erased,
        tombstones=tombstones,
    )
    return report, ids | not_found, emails


def _purge_phone_cache(con, ids: set[str]) -> int:
    """Delete these people's numbers from the phone-normalisation cache
    (``raw.phone_numbers`` holds phone texts, not customer ids, so the id-column sweep
    does not find them); numbers another customer also uses stay."""
    if not (_has_table(con, "raw", "phone_numbers") and _has_table(con, "raw", "customers")):
        return 0
    before = con.execute("select count(*) from raw.phone_numbers").fetchall()[0][0]
    con.execute(
        """
        delete from raw.phone_numbers
        where phone_text in (select phone from raw.customers
                             where customer_id in (select unnest($ids::varchar[])))
          and phone_text not in (select phone from raw.customers
                                 where phone is not null
                                   and customer_id not in (select unnest($ids::varchar[])))""",
        {"ids": sorted(ids)},
    )
    return before - con.execute("select count(*) from raw.phone_numbers").fetchall()[0][0]


def _write_tombstones(con, salt: str, ids: set[str], emails: set[str], phones: set[str]) -> int:
    before = con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]
    now = datetime.now(UTC).replace(tzinfo=None)
    for kind, values, expr in (
        ("customer_id", ids, _ID_SQL),
        ("email", emails, _EMAIL_SQL),
        ("phone", phones, "trim({})"),
    ):
        if values:
            con.execute(
                f"""
                insert or ignore into audit.erasure_tombstones
                select $kind, {_hash_sql(expr.format("v"))}, $now
                from (select unnest($values::varchar[]) as v)""",
                {"kind": kind, "values": sorted(values), "salt": salt, "now": now},
            )
    return con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0] - before


# --- keeping them out -----------------------------------------------------------------------


def apply_tombstones(
    con: duckdb.DuckDBPyConnection, run_id: str = "", match_contacts: bool = False
) -> TombstoneReport:
    """Delete input rows of forgotten customers; call right after ingest.

    Raw rows (and rejected records mentioning the id as a field) whose customer id hashes
    to a tombstone are deleted and counted per file in ``audit.erased_rows`` (reason
    ``tombstone``). Customer records under a *new* id with a forgotten e-mail or phone are
    counted in ``contact_matches`` and kept, because a person may come back and sign up
    again; with ``match_contacts=True`` they are erased and their id tombstoned too.
    """
    salt = ensure_erasure_tables(con)
    has_tombstones = con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]
    if not has_tombstones:
        return TombstoneReport(0, {}, 0)
    tables = _tables(con)
    sources = _raw_sources(tables)
    ids: set[str] = set()
    for source in sources:
        ids |= {
            r[0]
            for r in con.execute(
                f"""
            select customer_id from (select distinct customer_id from raw.{_q(source)}
                                     where customer_id is not null)
            where {_hash_sql(_ID_SQL.format("customer_id"))} in (
                select value_sha256 from audit.erasure_tombstones where kind = 'customer_id')
            """,
                {"salt": salt},
            ).fetchall()
        }
    contact_ids = _contact_matches(con, salt, ids) if _has_table(con, "raw", "customers") else set()
    if match_contacts:
        ids |= contact_ids
    rejected = _rejected_by_hash(con, salt)
    if not ids and not rejected:
        return TombstoneReport(0, {}, len(contact_ids))
    con.execute("begin transaction")
    try:
        _new_lineage_table(con)
        for source in sources:
            con.execute(
                f"insert into _erase_lineage select $source, _file_sha256, "
                f"_row_number from raw.{_q(source)} "
                f"where customer_id in (select unnest($ids::varchar[]))",
                {"source": source, "ids": sorted(ids)},
            )
        if rejected:
            con.executemany(
                "insert into _erase_lineage values (?, ?, ?)", [list(r) for r in rejected]
            )
        by_file = dict(
            con.execute(
                "select _file_sha256, count(*) from (select distinct * "
                "from _erase_lineage) group by all"
            ).fetchall()
        )
        _, erased = _purge(con, ids, "tombstone", run_id)
        if match_contacts and contact_ids:
            _write_tombstones(con, salt, contact_ids, set(), set())
        con.execute("drop table _erase_lineage")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    log.info("tombstones: %d input rows of forgotten customers removed", erased)
    return TombstoneReport(erased, by_file, 0 if match_contacts else len(contact_ids))


def _contact_matches(con, salt: str, known: set[str]) -> set[str]:
    """Ids of raw customer records, not tombstoned themselves, whose e-mail or phone is."""
    from pipelines.load.clean import normalise_phone

    rows = con.execute(
        f"""
        select distinct customer_id from raw.customers
        where email is not null and customer_id is not null
          and {_hash_sql(_EMAIL_SQL.format("email"))} in (
              select value_sha256 from audit.erasure_tombstones where kind = 'email')""",
        {"salt": salt},
    ).fetchall()
    ids = {r[0] for r in rows}
    phone_tombs = con.execute(
        "select count(*) from audit.erasure_tombstones where kind = 'phone'"
    ).fetchall()[0][0]
    if phone_tombs:
        pairs = con.execute(
            "select distinct customer_id, phone, country from raw.customers "
            "where phone is not null and customer_id is not null"
        ).fetchall()
        candidates = {}
        for cid, phone, country in pairs:
            e164 = normalise_phone(phone, country)
            if e164:
                candidates.setdefault(e164, set()).add(cid)
        if candidates:
            hits = con.execute(
                f"""
                select v from (select unnest($values::varchar[]) as v)
                where {_hash_sql("v")} in (select value_sha256 from audit.erasure_tombstones
                                           where kind = 'phone')""",
                {"values": sorted(candidates), "salt": salt},
            ).fetchall()
            for (value,) in hits:
                ids |= candidates[value]
    return ids - known


def _rejected_by_hash(con, salt: str) -> list[tuple[str, str, int]]:
    """Rejected records with a field (or e-mail) that hashes to a tombstone."""
    if not _has_table(con, "raw", "rejected_rows"):
        return []
    return con.execute(
        f"""
        with tokens as (
            select source, _file_sha256, _row_number,
                   unnest(regexp_split_to_array(raw_line, '[,;|\t"'' <>]+')) as token
            from raw.rejected_rows where raw_line is not null
        )
        select distinct source, _file_sha256, _row_number from tokens
        where token <> '' and (
            {_hash_sql(_ID_SQL.format("token"))} in (select value_sha256
                from audit.erasure_tombstones where kind = 'customer_id')
            or {_hash_sql(_EMAIL_SQL.format("token"))} in (select value_sha256
                from audit.erasure_tombstones where kind = 'email'))""",
        {"salt": salt},
    ).fetchall()


# --- compaction -----------------------------------------------------------------------------


def compact_database(path: Path) -> Path:
    """Rewrite the DuckDB database at ``path`` into a fresh file and swap it in.

    DuckDB reuses freed blocks but neither shrinks the file nor zeroes them, so deleted
    values stay readable in the file's bytes. ``COPY FROM DATABASE`` into a new file copies
    the live rows only (with schemas, views, sequences, macros, constraints and comments);
    the new file then replaces the old one with :func:`os.replace`.

    No connection to ``path`` may be open, in this process or another: the function
    fails with a clear error otherwise (DuckDB's file lock), instead of swapping the file
    under a writer. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.compact-{uuid.uuid4().hex[:8]}")
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        if p.exists():
            p.unlink()
    con = duckdb.connect(":memory:")
    src_attached = False
    try:
        try:
            # Read-write: the lock it takes keeps every other process out until the swap.
            con.execute(f"attach '{_sql_text(path)}' as compact_src")
        except duckdb.Error as exc:
            raise StepError(
                f"Cannot compact {path}: it is open elsewhere ({exc}). Stop the "
                "pipeline or the program holding it and retry."
            ) from exc
        src_attached = True
        con.execute("checkpoint compact_src")
        con.execute(f"attach '{_sql_text(tmp)}' as compact_dst")
        con.execute("copy from database compact_src to compact_dst")
        _check_copy(con)
        con.execute("checkpoint compact_dst")
        con.execute("detach compact_dst")
        copy_permissions(path, tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        con.execute("detach compact_src")  # the old inode; it has no unsaved changes
        src_attached = False
    except BaseException:
        if src_attached:
            con.execute("detach compact_src")
        for p in (tmp, tmp.with_name(tmp.name + ".wal")):
            if p.exists():
                p.unlink()
        raise
    finally:
        con.close()
    wal = path.with_name(path.name + ".wal")
    if wal.exists():  # a WAL of the old file must not be replayed onto the new one
        wal.unlink()
    return path


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def _check_copy(con) -> None:
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() "
        "where database_name = 'compact_src' order by 1, 2"
    ).fetchall()
    for schema, table in tables:
        a = con.execute(f"select count(*) from compact_src.{_q(schema)}.{_q(table)}").fetchall()[0][
            0
        ]
        b = con.execute(f"select count(*) from compact_dst.{_q(schema)}.{_q(table)}").fetchall()[0][
            0
        ]
        if a != b:
            raise StepError(
                f"Compaction copied {b} of {a} rows of {schema}.{table}; the "
                "database was left as it was."
            )


# --- the whole procedure ----------------------------------------------------------------------


def forget(settings: Settings, customer_ids: list[str]) -> ForgetReport:
    """Forget customers everywhere the pipeline keeps them; the ``crm forget`` command.

    Deletes and tombstones them in the working database, compacts it, publishes the
    serving database again (when there are marts) and rewrites every export directory
    without them. Raises :class:`StepError` when the warehouse is in use (a run is going
    on). Each stage is idempotent: if one fails, running the same command again completes
    the erasure (ids already deleted are still tombstoned, compacted and removed from the
    files).
    """
    from pipelines.publish import exports
    from pipelines.warehouse import connect_warehouse

    run_id = "forget-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    export_root = settings.exports.path
    con = _connect(settings, connect_warehouse)
    try:
        report, ids, emails = _forget(con, customer_ids, run_id)
        con.execute("checkpoint")
    finally:
        con.close()
    compact_database(settings.warehouse.path)
    con = _connect(settings, connect_warehouse)
    try:
        published = (
            publish_serving_database(con, settings, run_id)
            if _has_table(con, "marts", "customer_360")
            else None
        )
        # Exports hold surviving ids (and e-mails): match on every id of the people.
        removed = exports.remove_customers_from_exports(export_root, ids, emails, run_id)
    finally:
        con.close()
    return replace(report, compacted=True, serving_published=published, export_rows_removed=removed)


def _connect(settings: Settings, connect_warehouse) -> duckdb.DuckDBPyConnection:
    try:
        return connect_warehouse(settings)
    except duckdb.IOException as exc:
        raise StepError(
            f"The working database {settings.warehouse.path} is in use (a run "
            f"or another program holds it): {str(exc).splitlines()[0]} Retry "
            "when it is free."
        ) from exc
