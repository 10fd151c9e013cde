"""Which delivered files the clean and validate steps must (re)process, and the record of
what they did to each.

Staging and quarantine rows are kept per file (``_file_sha256``). A file's staged rows and
its validation verdicts depend only on its raw rows and on what this module fingerprints
per source: the staging SQL and its parameters (formats, time zone, missing-value markers,
exchange rates), the suite's rules and the config values they read, and the versions of
the code that applies them. So a file processed once under a fingerprint never needs
processing again; ``audit.file_processing`` records (source, file, fingerprint) after the
file passed validation, and a run processes only the files without a record under the
current fingerprint. A config or rule change changes the fingerprint of the sources it
touches, and only their files are processed again.

A file whose rows stopped a run (more failing rows than ``max_failed_share``) is marked
``rejected`` in ``raw.files``: its rows stay in raw, but never reach staging again. While
the rejected file is still delivered (in the export folder) the run stops and says so;
once a corrected file replaces it, the run goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime

import duckdb

from pipelines.config import Settings
from pipelines.errors import InputError
from pipelines.sqlrun import ensure_bookkeeping_tables, has_table, read_sql

log = logging.getLogger(__name__)

# Bump when staging or validation code changes what a file's rows become, so every file
# is processed again by the next run (SQL and rule changes are fingerprinted by content).
PROCESSING_VERSION = 1
PENDING_NAME = "pending_files"
PENDING_TABLE = f"temp.main.{PENDING_NAME}"


@dataclass(frozen=True)
class SourceFiles:
    """One source's files as this run finds them.

    ``pending``: sha256s to stage and validate this run (new, or processed before under
    another fingerprint); ``changed``: those of ``pending`` that were processed before
    under another fingerprint (a config or rule change); ``reused``: files whose staged
    rows and verdicts are kept as they are; ``fingerprint``: the source's current one;
    ``processed_before``: every file that passed validation once, under any fingerprint.
    """

    source: str
    fingerprint: str
    pending: tuple[str, ...]
    changed: tuple[str, ...]
    reused: int
    processed_before: tuple[str, ...] = ()

    @property
    def is_everything(self) -> bool:
        """Whether every file of the source is pending (staging is rebuilt whole)."""
        return self.reused == 0


def source_fingerprint(con: duckdb.DuckDBPyConnection, settings: Settings, source: str) -> str:
    """A 16-hex-digit digest of everything that decides ``source``'s staged rows and
    verdicts besides the rows themselves. Needs ``staging.fx_rates`` (the clean step
    writes it first)."""
    from importlib import metadata

    import phonenumbers

    from pipelines.load.clean import source_params
    from pipelines.load.rules import suite_rules

    parts = {
        "version": PROCESSING_VERSION,
        "params": source_params(settings.sources.get(source)),
        "sql": [read_sql(f"staging/{source}"), read_sql("macros")],
        "rules": [repr(rule) for rule in suite_rules(source, settings)],
    }
    if source == "transactions":
        parts["fx_rates"] = con.execute(
            "select currency, units_per_base, is_configured from staging.fx_rates order by all"
        ).fetchall()
    if source == "customers":
        parts["phonenumbers"] = phonenumbers.__version__
        parts["pycountry"] = metadata.version("pycountry")  # country names to codes
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def find_source_files(
    con: duckdb.DuckDBPyConnection, settings: Settings, source: str, *, full_refresh: bool = False
) -> SourceFiles:
    """The files of ``source`` in ``raw.files`` (rejected ones left out) and which of them
    this run must process; ``full_refresh`` makes every file pending."""
    ensure_bookkeeping_tables(con)
    fingerprint = source_fingerprint(con, settings, source)
    rows = con.execute(
        """
        select f.file_sha256, p.fingerprint
        from raw.files f
        left join audit.file_processing p
          on p.source = f.source and p.file_sha256 = f.file_sha256
        where f.source = ? and f.status <> 'rejected'
        order by f.file_sha256""",
        [source],
    ).fetchall()
    pending = [sha for sha, done in rows if full_refresh or done != fingerprint]
    changed = [sha for sha, done in rows if done is not None and done != fingerprint]
    return SourceFiles(
        source,
        fingerprint,
        tuple(pending),
        tuple(changed),
        len(rows) - len(pending),
        tuple(sha for sha, done in rows if done is not None),
    )


def set_pending(con: duckdb.DuckDBPyConnection, files: SourceFiles) -> None:
    """Write the pending sha256s to the temp table the staging SQL and the validation read."""
    con.execute(f"create or replace temp table {PENDING_NAME} (file_sha256 varchar)")
    if files.pending:
        con.executemany(f"insert into {PENDING_TABLE} values (?)", [[sha] for sha in files.pending])


def record_processed(
    con: duckdb.DuckDBPyConnection, files: SourceFiles, run_id: str, counts: dict[str, dict]
) -> None:
    """Record the pending files of ``files`` as processed under its fingerprint.

    ``counts`` maps a sha256 to {"rows": staged, "quarantined": rows quarantined,
    "blanked": fields blanked}; files without an entry had no rows.
    """
    if not files.pending:
        return
    now = datetime.now()
    con.execute(
        "delete from audit.file_processing where source = ? and list_contains(?, file_sha256)",
        [files.source, list(files.pending)],
    )
    con.executemany(
        "insert into audit.file_processing values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [
                files.source,
                sha,
                files.fingerprint,
                run_id,
                now,
                counts.get(sha, {}).get("rows", 0),
                counts.get(sha, {}).get("quarantined", 0),
                counts.get(sha, {}).get("blanked", 0),
            ]
            for sha in files.pending
        ],
    )


def remove_rows_of_pending(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Delete the staged rows and verdicts of the pending files (they are made again), and
    those of files no longer processed at all (rejected since)."""
    keep = f"""
        select file_sha256 from raw.files where source = '{source}' and status <> 'rejected'
        except select file_sha256 from {PENDING_TABLE}"""
    for table in (f"staging.{source}", f"quarantine.{source}"):
        if has_table(con, *table.split(".")):
            con.execute(f"delete from {table} where _file_sha256 not in ({keep})")
    con.execute(
        f"delete from quarantine.field_issues where source = ? and _file_sha256 not in ({keep})",
        [source],
    )


def reject_file(
    con: duckdb.DuckDBPyConnection,
    files: SourceFiles,
    sha: str,
    run_id: str,
    message: str,
) -> None:
    """Mark a file whose rows stopped the run; later runs leave its rows out until the
    source's fingerprint (``files.fingerprint``, its options and rules) changes."""
    con.execute(
        "update raw.files set status = 'rejected' where source = ? and file_sha256 = ?",
        [files.source, sha],
    )
    con.execute(
        "insert into audit.rejected_files values (?, ?, ?, ?, ?, ?)",
        [files.source, sha, run_id, message, datetime.now(), files.fingerprint],
    )


def check_rejected_files_replaced(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str
) -> list[str]:
    """Stop the run while a rejected file is still delivered; returns the paths of rejected
    files left out of this run (replaced or removed since).

    A rejected file gets another chance once its source's options or rules changed (the
    fix its error message suggests): it is then processed again like a new file.
    """
    ensure_bookkeeping_tables(con)
    for source, sha, fingerprint in con.execute("""
            select r.source, r.file_sha256, arg_max(r.fingerprint, r.rejected_at)
            from audit.rejected_files r
            join raw.files f on f.source = r.source and f.file_sha256 = r.file_sha256
            where f.status = 'rejected'
            group by all""").fetchall():
        if source_fingerprint(con, settings, source) != fingerprint:
            log.info(
                "%s file %s: settings changed since it was rejected; trying it again",
                source,
                sha[:12],
            )
            con.execute(
                "update raw.files set status = 'loaded' where source = ? and file_sha256 = ?",
                [source, sha],
            )
    still = con.execute(
        """
        select d.source, d.file_path, r.message
        from raw.deliveries d
        join raw.files f on f.source = d.source and f.file_sha256 = d.file_sha256
        join audit.rejected_files r on r.source = f.source and r.file_sha256 = f.file_sha256
        where d.run_id = ? and f.status = 'rejected'
        order by d.file_path""",
        [run_id],
    ).fetchall()
    if still:
        source, path, message = still[0]
        raise InputError(
            f"File {path} (source '{source}') was rejected by an earlier run and is still "
            f"delivered: {message.split('. Check')[0]}. Replace it with a corrected file (a "
            "new file under the same name replaces it) or remove it from the export folder; "
            "its rows are kept in raw but never used."
        )
    return [
        r[0]
        for r in con.execute(
            "select file_path from raw.files where status = 'rejected' order by file_path"
        ).fetchall()
    ]
