"""Erasure inside the working database: the lower-level parts of :mod:`pipelines.erasure`.

The tombstone tables (:func:`ensure_erasure_tables`), normalising and hashing (keyed, see
pipelines/erasure_keys.py) the values that are tombstoned, finding the tables and rows that hold a person (their ids,
exclusive e-mails and phones, input rows by lineage, rejected records), deleting them
(``_purge``) and writing or matching the tombstones. The transactions and the order of the
steps are in pipelines/erasure.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from pipelines.erasure_keys import LEGACY_KEY_ID, KeyRing, MissingKeyError, TombstoneKey
from pipelines.sqlrun import ensure_bookkeeping_tables, has_table

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


# --- bookkeeping tables -------------------------------------------------------------------


def ensure_erasure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the erasure's audit tables (idempotent).

    - ``audit.erasure_tombstones(kind, value_sha256, erased_at, key_id)``: kind is
      customer_id, email or phone; value_sha256 = sha256(prefix || normalised value) with
      the prefix of the erasure key ``key_id`` (pipelines/erasure_keys.py); key_id
      ``salt-v0``: a legacy tombstone, prefix = the salt in ``audit.settings``.
    - ``audit.erased_rows(run_id, source, file_sha256, rows, reason, erased_at)``: input
      rows removed per file, for reconciliation (read = loaded + quarantined + duplicates
      + erased).
    - ``audit.settings(key, value)``: the legacy salt, while legacy tombstones remain.
    """
    ensure_bookkeeping_tables(con)
    con.execute(
        "update audit.erasure_tombstones set key_id = ? where key_id is null", [LEGACY_KEY_ID]
    )


def legacy_salt(con: duckdb.DuckDBPyConnection) -> str | None:
    """The salt of the legacy tombstones (written before keyed ones), or None."""
    salt = con.execute("select value from audit.settings where key = ?", [SALT_KEY]).fetchall()
    return salt[0][0] if salt else None


def matching_keys(con: duckdb.DuckDBPyConnection, ring: KeyRing) -> list[TombstoneKey]:
    """The ring's keys that tombstones of this warehouse use (none: nothing to match).

    Raises :class:`MissingKeyError` when tombstones use a key the ring lacks: without it
    those people would come back with the next re-sent export.
    """
    ring = ring.with_legacy_salt(legacy_salt(con))
    used = con.execute(
        "select key_id, count(*) from audit.erasure_tombstones group by all order by 1"
    ).fetchall()
    missing = [(k, n) for k, n in used if ring.get(k) is None]
    if missing:
        listed = ", ".join(f"{k} ({n} tombstones)" for k, n in missing)
        raise MissingKeyError(
            f"The working database holds tombstones of forgotten customers written under "
            f"the erasure key id(s) {listed}, and that key is not set. Without it they cannot "
            "be matched, so a re-sent export would bring those customers back; this command "
            f"stops here, before reading any file. {ring.how_to_set}"
        )
    return [ring.get(k) for k, _ in used]


def _match_sql(keys: list[TombstoneKey], kind: str, expr: str, params: dict) -> str:
    """SQL that is true when ``expr`` (a normalised value) hashes to a tombstone of
    ``kind`` under one of ``keys``; adds the keys' prefixes to ``params``."""
    parts = []
    for i, key in enumerate(keys):
        params[f"_tk{i}"] = key.prefix
        params[f"_tid{i}"] = key.key_id
        parts.append(
            f"sha256($_tk{i} || {expr}) in (select value_sha256 from audit.erasure_tombstones "
            f"where kind = '{kind}' and key_id = $_tid{i})"
        )
    return "(" + (" or ".join(parts) or "false") + ")"


def normalise_id(value: str) -> str:
    """Customer ids as ingest stores them: trimmed text (NFC), case and zeros kept."""
    return unicodedata.normalize("NFC", str(value)).strip()


# SQL twins of the normalisations, for hashing inside DuckDB.
_ID_SQL = "nfc_normalize(trim({}))"
_EMAIL_SQL = "lower(trim(nfc_normalize({})))"


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
    if has_table(con, "core", "customer_map"):
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
        if has_table(con, schema, table):
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
    if not has_table(con, "raw", "rejected_rows") or not (ids or emails):
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


def _purge_phone_cache(con, ids: set[str]) -> int:
    """Delete these people's numbers from the phone-normalisation cache
    (``raw.phone_numbers`` holds phone texts, not customer ids, so the id-column sweep
    does not find them); numbers another customer also uses stay."""
    if not (has_table(con, "raw", "phone_numbers") and has_table(con, "raw", "customers")):
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


def _write_tombstones(
    con,
    key: TombstoneKey,
    ids: set[str],
    emails: set[str],
    phones: set[str],
    older: list[TombstoneKey] = (),
) -> int:
    """Tombstone these values under ``key``; returns how many tombstones are new.

    A value that also has a tombstone under one of the ``older`` keys (a retired key, the
    legacy salt) loses it: forgetting a person again moves them to the current key, so a
    retired or leaked key stops covering them; the salt goes with the last legacy one.
    """
    before = con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]
    now = datetime.now(UTC).replace(tzinfo=None)
    older = [k for k in older if k.key_id != key.key_id]
    for kind, values, expr in (
        ("customer_id", ids, _ID_SQL),
        ("email", emails, _EMAIL_SQL),
        ("phone", phones, "trim({})"),
    ):
        if not values:
            continue
        params = {"kind": kind, "values": sorted(values)}
        for old in older:
            con.execute(
                f"""
                delete from audit.erasure_tombstones
                where kind = $kind and key_id = $id and value_sha256 in (
                    select sha256($k || {expr.format("v")})
                    from (select unnest($values::varchar[]) as v))""",
                {**params, "k": old.prefix, "id": old.key_id},
            )
        con.execute(
            f"""
            insert or ignore into audit.erasure_tombstones (kind, value_sha256, erased_at, key_id)
            select $kind, sha256($k || {expr.format("v")}), $now, $id
            from (select unnest($values::varchar[]) as v)""",
            {**params, "k": key.prefix, "id": key.key_id, "now": now},
        )
    after = con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]
    if (
        legacy_salt(con) is not None
        and not con.execute(
            "select count(*) from audit.erasure_tombstones where key_id = ?", [LEGACY_KEY_ID]
        ).fetchall()[0][0]
    ):
        con.execute("delete from audit.settings where key = ?", [SALT_KEY])
    return max(after - before, 0)


# --- keeping them out -----------------------------------------------------------------------


def _contact_matches(con, keys: list[TombstoneKey], known: set[str]) -> set[str]:
    """Ids of raw customer records, not tombstoned themselves, whose e-mail or phone is."""
    from pipelines.load.clean import normalise_phone

    params: dict = {}
    email_match = _match_sql(keys, "email", _EMAIL_SQL.format("email"), params)
    rows = con.execute(
        f"""
        select distinct customer_id from raw.customers
        where email is not null and customer_id is not null and {email_match}""",
        params,
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
            params = {"values": sorted(candidates)}
            phone_match = _match_sql(keys, "phone", "v", params)
            hits = con.execute(
                f"select v from (select unnest($values::varchar[]) as v) where {phone_match}",
                params,
            ).fetchall()
            for (value,) in hits:
                ids |= candidates[value]
    return ids - known


def _rejected_by_hash(con, keys: list[TombstoneKey]) -> list[tuple[str, str, int]]:
    """Rejected records with a field (or e-mail) that hashes to a tombstone."""
    if not has_table(con, "raw", "rejected_rows"):
        return []
    params: dict = {}
    id_match = _match_sql(keys, "customer_id", _ID_SQL.format("token"), params)
    email_match = _match_sql(keys, "email", _EMAIL_SQL.format("token"), params)
    return con.execute(
        f"""
        with tokens as (
            select source, _file_sha256, _row_number,
                   unnest(regexp_split_to_array(raw_line, '[,;|\t"'' <>]+')) as token
            from raw.rejected_rows where raw_line is not null
        )
        select distinct source, _file_sha256, _row_number from tokens
        where token <> '' and ({id_match} or {email_match})""",
        params,
    ).fetchall()


# --- keeping them out at ingest (before a row is written) -----------------------------------


@dataclass(frozen=True)
class KeepOut:
    """Tombstone matching for rows a reader has not written yet: SQL conditions the readers
    put in their INSERT, so a forgotten customer's re-sent rows never reach a page of the
    working database (or its WAL). ``keys``: the keys the warehouse's tombstones use."""

    keys: tuple[TombstoneKey, ...]

    def id_condition(self, expr: str) -> tuple[str, dict]:
        """SQL true when the customer id ``expr`` is tombstoned, and its parameters."""
        params: dict = {}
        return _match_sql(list(self.keys), "customer_id", _ID_SQL.format(expr), params), params

    def line_condition(self, expr: str) -> tuple[str, dict]:
        """SQL true when a field of the rejected line ``expr`` (a column of the outer
        query, split as :func:`_rejected_by_hash` splits it) is a tombstoned id or e-mail."""
        params: dict = {}
        id_match = _match_sql(list(self.keys), "customer_id", _ID_SQL.format("token"), params)
        email_match = _match_sql(list(self.keys), "email", _EMAIL_SQL.format("token"), params)
        sql = (
            f"exists (select 1 from (select unnest(regexp_split_to_array({expr}, "
            f"'[,;|\t\"'' <>]+')) as token) where token <> '' and ({id_match} or {email_match}))"
        )
        return sql, params


def keep_out(con: duckdb.DuckDBPyConnection, ring: KeyRing) -> KeepOut | None:
    """The ingest filter of this warehouse's tombstones, or None when there are none (the
    readers then insert as they always did). Raises :class:`MissingKeyError` when a key the
    tombstones use is not in ``ring``."""
    ensure_erasure_tables(con)
    if not con.execute("select count(*) from audit.erasure_tombstones").fetchall()[0][0]:
        return None
    return KeepOut(tuple(matching_keys(con, ring)))
