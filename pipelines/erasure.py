"""Erasure ("right to be forgotten"): delete a person from every layer and keep them out.

:func:`forget` is the whole procedure behind ``crm forget CUSTOMER_ID...``:

1. :func:`forget_customers` resolves each given id (a surviving ``customer_id`` or any
   source id) to every source id of that person via ``core.customer_map``, and in one
   transaction deletes their rows from every table of raw, staging, quarantine, core,
   models, marts and audit: rows whose id column (:func:`id_columns`) holds one of the ids,
   and rows that point at an erased input row by lineage (``_file_sha256``,
   ``_row_number``: quarantine.field_issues, core.duplicate_rows, ...). Tables are found
   through the catalog, so tables added later are covered. Erased input rows are counted
   per file in ``audit.erased_rows``; the person is remembered only as keyed hashes in
   ``audit.erasure_tombstones`` (the key stays outside the database:
   pipelines/erasure_keys.py).
2. :func:`compact_database` rewrites the working database into a new file: DuckDB neither
   shrinks nor zeroes freed blocks, so the deleted values would otherwise stay readable in
   the file.
3. The serving database is published again (a fresh file, see ``pipelines/publish/serving.py``).
4. Every export directory is rewritten without the person.

:func:`apply_tombstones`, called right after ingest on every run, deletes newly ingested
raw rows of tombstoned ids, so a re-sent export does not bring the person back.

What stays outside the warehouse and needs the operator: the source export files
themselves, HTML reports, backups, and copies BI users made.

This module holds the procedure (the transactions, the order of the stages) and is
the public face; the lower-level parts live in pipelines/erasure_rows.py (keyed
hashing, finding and deleting a person's rows, tombstones) and
pipelines/erasure_compact.py (:func:`compact_database`), re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.erasure_compact import compact_database
from pipelines.erasure_keys import KeyRing, MissingKeyError, TombstoneKey, key_ring
from pipelines.erasure_rows import (
    _EMAIL_SQL,
    _ID_SQL,
    ERASABLE_SCHEMAS,
    ERASURE_TABLES,
    EXTRA_ID_COLUMNS,
    LINEAGE_COLUMNS,
    SALT_KEY,
    _contact_matches,
    _exclusive_contacts,
    _match_sql,
    _new_lineage_table,
    _purge,
    _purge_phone_cache,
    _q,
    _raw_sources,
    _rejected_by_hash,
    _rejected_matches,
    _tables,
    _write_tombstones,
    ensure_erasure_tables,
    id_columns,
    matching_keys,
    normalise_id,
    resolve_source_ids,
)
from pipelines.errors import CrmError, StepError
from pipelines.publish.serving import publish_serving_database
from pipelines.sqlrun import has_table

# Re-exported: the names other modules and the tests use from pipelines.erasure.
__all__ = [
    "ERASABLE_SCHEMAS",
    "ERASURE_TABLES",
    "EXTRA_ID_COLUMNS",
    "LINEAGE_COLUMNS",
    "SALT_KEY",
    "ForgetReport",
    "KeyRing",
    "MissingKeyError",
    "TombstoneReport",
    "apply_tombstones",
    "compact_database",
    "ensure_erasure_tables",
    "forget",
    "forget_customers",
    "id_columns",
    "key_ring",
    "normalise_id",
    "resolve_source_ids",
]

log = logging.getLogger(__name__)


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


# --- forgetting -----------------------------------------------------------------------------


def forget_customers(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    customer_ids: list[str],
    run_id: str | None = None,
) -> ForgetReport:
    """Delete every row of the people behind ``customer_ids`` and tombstone them.

    One transaction: either everything of these people is deleted and tombstoned, or
    nothing. The freed bytes stay in the file until :func:`compact_database`. The
    tombstones are keyed with the erasure key of ``settings`` (:func:`key_ring`); raises
    :class:`MissingKeyError` (nothing changed) when it is not set.
    """
    return _forget(con, customer_ids, run_id, ring=key_ring(settings))[0]


def _forget(
    con: duckdb.DuckDBPyConnection,
    customer_ids: list[str],
    run_id: str | None,
    force: bool = True,
    ring: KeyRing | None = None,
) -> tuple[ForgetReport, set[str], set[str]]:
    """:func:`forget_customers`, also returning the erased source ids and e-mails (needed
    to clean the export files after the database no longer knows them)."""
    run_id = run_id or f"forget-{uuid.uuid4().hex[:12]}"
    if not customer_ids or not any(normalise_id(i) for i in customer_ids):
        raise CrmError("Give at least one customer id to forget.")
    ring = ring if ring is not None else key_ring()
    key = ring.require_current()
    con.execute("begin transaction")
    try:
        ensure_erasure_tables(con)
        keys = matching_keys(con, ring)
        ids, not_found = resolve_source_ids(con, customer_ids)
        unknown = sorted(not_found - _tombstoned_ids(con, keys, not_found))
        if unknown and not force:
            raise UnknownIdsError(
                f"Not found anywhere in {len(unknown)} id(s): {', '.join(unknown)}. "
                "crm forget keeps a tombstone for ever, so a customer who later gets such "
                "an id would be erased at every ingest; it refuses ids it has never seen "
                "(a typo?). Nothing was changed. Check the ids, or pass --force to "
                "tombstone them all the same."
            )
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
        tombstones = _write_tombstones(con, key, ids | not_found, emails, phones, keys)
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


class UnknownIdsError(CrmError):
    """``crm forget`` was given ids never seen, without ``--force``; nothing changed."""

    exit_code = 2


def _tombstoned_ids(
    con: duckdb.DuckDBPyConnection, keys: list[TombstoneKey], ids: set[str]
) -> set[str]:
    """Those of ``ids`` already tombstoned (forgotten before: not a typo)."""
    if not ids:
        return set()
    params: dict = {"ids": sorted(ids)}
    match = _match_sql(keys, "customer_id", _ID_SQL.format("v"), params)
    return {
        r[0]
        for r in con.execute(
            f"select v from (select unnest($ids::varchar[]) as v) where {match}", params
        ).fetchall()
    }


# --- keeping them out -----------------------------------------------------------------------


def apply_tombstones(
    con: duckdb.DuckDBPyConnection,
    run_id: str = "",
    match_contacts: bool = False,
    ring: KeyRing | None = None,
) -> TombstoneReport:
    """Delete input rows of forgotten customers; call right after ingest.

    Raw rows (and rejected records mentioning the id as a field) whose customer id hashes
    to a tombstone are deleted and counted per file in ``audit.erased_rows`` (reason
    ``tombstone``). Customer records under a *new* id with a forgotten e-mail or phone are
    counted in ``contact_matches`` and kept, because a person may come back and sign up
    again; with ``match_contacts=True`` they are erased and their id tombstoned too.

    ``ring`` (default: :func:`key_ring` from the environment) must hold every key the
    tombstones use, else :class:`MissingKeyError`; without tombstones no key is needed.
    """
    ensure_erasure_tables(con)
    has_tombstones = con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]
    if not has_tombstones:
        return TombstoneReport(0, {}, 0)
    ring = ring if ring is not None else key_ring()
    keys = matching_keys(con, ring)
    tables = _tables(con)
    sources = _raw_sources(tables)
    ids: set[str] = set()
    params: dict = {}
    id_match = _match_sql(keys, "customer_id", _ID_SQL.format("customer_id"), params)
    for source in sources:
        ids |= {
            r[0]
            for r in con.execute(
                f"""
            select customer_id from (select distinct customer_id from raw.{_q(source)}
                                     where customer_id is not null)
            where {id_match}""",
                params,
            ).fetchall()
        }
    contact_ids = _contact_matches(con, keys, ids) if has_table(con, "raw", "customers") else set()
    if match_contacts:
        ids |= contact_ids
    rejected = _rejected_by_hash(con, keys)
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
            _write_tombstones(con, ring.require_current(), contact_ids, set(), set(), keys)
        con.execute("drop table _erase_lineage")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    log.info("tombstones: %d input rows of forgotten customers removed", erased)
    return TombstoneReport(erased, by_file, 0 if match_contacts else len(contact_ids))


# --- the whole procedure ----------------------------------------------------------------------


def forget(settings: Settings, customer_ids: list[str], force: bool = False) -> ForgetReport:
    """Forget customers everywhere the pipeline keeps them; the ``crm forget`` command.

    Deletes and tombstones them in the working database, compacts it, publishes the
    serving database again (when there are marts) and rewrites every export directory
    without them. Ids found nowhere (and not forgotten before) are refused with
    :class:`UnknownIdsError` unless ``force``. Raises :class:`WarehouseBusyError` when a
    run holds the warehouse.

    The erasure is recorded as pending (:func:`pending_erasure_path`, no personal data in
    it) before anything is deleted, and the record is removed only when every stage is
    done; until then every ``crm`` command finishes it first
    (:func:`finish_pending_erasure`).
    """
    from pipelines.publish.journal import complete_interrupted_publish
    from pipelines.warehouse import connect_warehouse, release_holder

    run_id = "forget-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    ring = key_ring(settings)
    ring.require_current()  # before anything is touched: a missing key changes nothing
    con = _connect(settings, connect_warehouse, run_id)
    try:
        # an interrupted publish first: the erasure then rewrites one run's outputs
        complete_interrupted_publish(con, settings)
        _mark_pending(settings, run_id, deleted=False)
        try:
            report, ids, emails = _forget(con, customer_ids, run_id, force=force, ring=ring)
        except BaseException:
            # the transaction rolled back: nothing to finish (a pending older erasure,
            # if any, was finished before this command started)
            pending_erasure_path(settings).unlink(missing_ok=True)
            raise
        _mark_pending(settings, run_id, deleted=True)
        con.execute("checkpoint")
    finally:
        con.close()
        release_holder(settings)
    published, removed = _finish_stages(settings, run_id, ids, emails)
    return replace(report, compacted=True, serving_published=published, export_rows_removed=removed)


def pending_erasure_path(settings: Settings) -> Path:
    """The record of an erasure not finished yet: beside the working database."""
    wh = settings.warehouse.path
    return wh.with_name(f"{wh.name}.erasure-pending.json")


def _mark_pending(settings: Settings, run_id: str, *, deleted: bool) -> None:
    path = pending_erasure_path(settings)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "run_id": run_id,
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
                "rows_deleted": deleted,
            }
        ),
        encoding="utf-8",
    )
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def pending_erasure(settings: Settings) -> dict | None:
    """The pending erasure's record (run_id, since, rows_deleted), or None."""
    try:
        return json.loads(pending_erasure_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def finish_pending_erasure(settings: Settings) -> str | None:
    """Finish an erasure that stopped half done (killed, full disk): compact the working
    database, publish the serving database again and remove every tombstoned person from
    the export files; then drop the pending record. Every ``crm`` command that writes
    calls this first. Returns one sentence saying what was finished, or None.

    Raises :class:`CrmError` when the stopped erasure may not have deleted the rows (it
    stopped before its transaction was known to commit): only ``crm forget`` with the
    same ids can finish it, and nothing else runs until then.
    """
    pending = pending_erasure(settings)
    if pending is None:
        return None
    if not pending.get("rows_deleted"):
        raise CrmError(
            f"The erasure {pending['run_id']} (crm forget, started {pending['since']}) "
            "stopped before it was known to have deleted the customers' rows, and "
            f"{pending_erasure_path(settings)} does not hold the ids (it holds no "
            "personal data). Run the same crm forget again (ids already forgotten are "
            "accepted); no other command runs until it has finished."
        )
    _finish_stages(settings, pending["run_id"], set(), set())
    return (
        f"The erasure {pending['run_id']} (started {pending['since']}) had stopped half "
        "done; it is finished now: the working database is compacted, and the serving "
        "database and the export files no longer hold the forgotten customers."
    )


def _finish_stages(
    settings: Settings, run_id: str, ids: set[str], emails: set[str]
) -> tuple[Path | None, dict[str, int]]:
    """Compaction, serving database, exports, leftovers: the stages after the deletion.
    Customers are matched by ``ids``/``emails`` and by every tombstone (so a finish after
    a crash, which no longer knows the ids, removes them too)."""
    from pipelines.publish import exports
    from pipelines.warehouse import connect_warehouse, release_holder

    try:
        compact_database(settings.warehouse.path)
        con = _connect(settings, connect_warehouse, run_id)
        try:
            remove_compaction_leftovers(settings.warehouse.path)
            published = (
                publish_serving_database(con, settings, run_id)
                if has_table(con, "marts", "customer_360")
                else None
            )
            hashed_ids, hashed_emails = _tombstoned_in_exports(
                con, settings.exports.path, key_ring(settings)
            )
            # Exports hold surviving ids (and e-mails): match on every id of the people.
            removed = exports.remove_customers_from_exports(
                settings.exports.path, ids | hashed_ids, emails | hashed_emails, run_id
            )
        finally:
            con.close()
            release_holder(settings)
    except CrmError:
        raise
    except Exception as exc:
        raise StepError(
            f"The erasure {run_id} deleted the customers' rows and wrote their tombstones, "
            f"but stopped while compacting or rewriting the outputs ({exc}). Until it is "
            "finished, the old bytes may remain in the working database file, and the "
            "serving database and export files may still hold the customers. Every crm "
            "command finishes it first: fix the cause (free disk space?) and run crm "
            "status or crm forget again."
        ) from exc
    pending_erasure_path(settings).unlink(missing_ok=True)
    return published, removed


def remove_compaction_leftovers(path: Path) -> list[Path]:
    """Delete ``.<name>.compact-*`` files a killed compaction left beside ``path``. Call
    with the working database open: then no compaction is running."""
    removed = []
    for leftover in Path(path).parent.glob(f".{Path(path).name}.compact-*"):
        leftover.unlink()
        removed.append(leftover)
    return removed


def _tombstoned_in_exports(
    con: duckdb.DuckDBPyConnection, root: Path, ring: KeyRing
) -> tuple[set[str], set[str]]:
    """Customer ids and e-mails in the export files whose hash is a tombstone."""
    files = sorted(str(p) for p in Path(root).glob("[0-9]*/*.parquet"))
    if not files:
        return set(), set()
    ensure_erasure_tables(con)
    keys = matching_keys(con, ring)
    params: dict = {"files": files}
    id_match = _match_sql(keys, "customer_id", _ID_SQL.format("customer_id"), params)
    email_match = _match_sql(keys, "email", _EMAIL_SQL.format("email"), params)
    rows = con.execute(
        f"""
        select distinct customer_id, email from read_parquet($files)
        where {id_match} or {email_match}""",
        params,
    ).fetchall()
    return {r[0] for r in rows if r[0]}, {r[1] for r in rows if r[1]}


def _connect(
    settings: Settings, connect_warehouse, run_id: str | None = None
) -> duckdb.DuckDBPyConnection:
    try:
        return connect_warehouse(settings, "crm forget", run_id)
    except duckdb.IOException as exc:
        raise StepError(
            f"The working database {settings.warehouse.path} is in use (a run "
            f"or another program holds it): {str(exc).splitlines()[0]} Retry "
            "when it is free."
        ) from exc
