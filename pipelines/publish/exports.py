"""Marketing exports: one CSV and one Parquet file per RFM segment and per action list.

``<exports.path>/<as_of>/`` holds, for each list, ``<list>.csv`` and ``<list>.parquet`` with
the same rows, plus ``manifest.json`` (as_of, run_id, and per file its name, rows, sha256
and columns). Lists:

=========================  ================================================================
file                       customers (all: marketing_consent = true and an e-mail address)
=========================  ================================================================
segment_<rfm_segment>      one file per segment of the configured RFM grid
list_vip_care              rfm_segment champions or value_tier strategic, not lapsed
list_win_back              lifecycle_stage lapsed
list_reorder_reminder      expected_next_order_date from as_of to as_of + reorder_within_days
list_birthdays             birth_date in the calendar month of as_of
list_onboarding            lifecycle_stage new
list_follow_up             value_tier strategic or key, and no contact event (an event of
                           contact_event_types) in the follow_up_after_days up to as_of
=========================  ================================================================

Only the columns a campaign needs leave the warehouse (:data:`EXPORT_COLUMNS`); ``segment``
is the list's name (the RFM segment for segment files). Rows are ordered by customer_id
and the writers are deterministic, so a rerun writes byte-identical files. Files are
mode 0600 and the directory 0700: personal data, readable only by the pipeline's user.

Config (``[exports]``, all optional; relative paths resolve against the config file;
validated on load into ``Settings.exports``, :class:`pipelines.config.ExportSettings`)::

    path = "exports"
    reorder_within_days = 14
    follow_up_after_days = 90
    contact_event_types = ["support_ticket", "survey_response", "call"]

Publishing is atomic per directory (:func:`pipelines.files.publish_directory`): the files
are written to the hidden ``.<as_of>.tmp-<run_id>/`` beside the final directory and
swapped in; a crash at any point leaves either the old or the new complete directory
under ``<as_of>/`` (or, in the fallback swap's one gap, none: the next run restores the
old one) plus hidden leftovers that :func:`recover_export_dirs` removes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import Settings
from pipelines.errors import StepError
from pipelines.files import (
    file_sha256,
    fsync_dir,
    make_dirs,
    publish_directory,
    recover_directory_swaps,
    safe_token,
)
from pipelines.publish import marketing

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    "customer_id",
    "email",
    "full_name",
    "segment",
    "recommended_action",
    "predicted_clv",
    "churn_band",
    "churn_reasons",
    "expected_next_order_date",
)
EXPORT_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("email", pa.string()),
        ("full_name", pa.string()),
        ("segment", pa.string()),
        ("recommended_action", pa.string()),
        ("predicted_clv", pa.float64()),
        ("churn_band", pa.string()),
        ("churn_reasons", pa.string()),
        ("expected_next_order_date", pa.date32()),
    ]
)
MANIFEST_NAME = "manifest.json"
FILE_MODE = 0o600
DIR_MODE = 0o700

# Action lists: name -> condition on marts.customer_360 (alias c). Constants of the code,
# never text from config; the tunable numbers are parameters.
ACTION_LISTS: Mapping[str, str] = {
    "vip_care": "(c.rfm_segment = 'champions' or c.value_tier = 'strategic') "
    "and c.lifecycle_stage is distinct from 'lapsed'",
    "win_back": "c.lifecycle_stage = 'lapsed'",
    "reorder_reminder": "c.expected_next_order_date between $as_of "
    "and $as_of + $reorder_within_days::integer",
    "birthdays": "month(c.birth_date) = month($as_of)",
    "onboarding": "c.lifecycle_stage = 'new'",
    "follow_up": "c.value_tier in ('strategic', 'key') "
    "and c.customer_id not in (select customer_id from contacted)",
}

_AS_OF = r"\d{4}-\d{2}-\d{2}"
_AS_OF_DIR = re.compile(rf"^{_AS_OF}$")


@dataclass(frozen=True)
class ExportFile:
    name: str
    rows: int
    sha256: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ExportReport:
    """What :func:`write_exports` published: the directory, its files and the manifest."""

    directory: Path
    as_of: date
    run_id: str
    files: tuple[ExportFile, ...]
    manifest: Path
    rows_by_list: Mapping[str, int] = field(default_factory=dict)


# --- building the lists -------------------------------------------------------------------


def _segment_names(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[str]:
    configured = list(settings.rules.rfm_grid.segments) if settings.rules else []
    present = [
        r[0]
        for r in con.execute(
            "select distinct rfm_segment from marts.customer_360 where rfm_segment is not null "
            "order by 1"
        ).fetchall()
    ]
    return list(dict.fromkeys(configured + present))


def _file_stem(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^a-z0-9_]+', '_', name.lower()).strip('_') or 'unnamed'}"


def empty_exports_reason(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why every marketing list of this run is empty, in one sentence, or None when some
    customer can be contacted (consent given and an e-mail address known).

    Reads ``marts.customer_360``. An empty list for a reason the data explains (no customers
    source, no consent) is said, so nobody mistakes it for a failed export.
    """
    customers, with_email, consenting, contactable = con.execute("""
        select count(*), count(email), count(*) filter (where marketing_consent),
               count(*) filter (where marketing_consent and email is not null)
        from marts.customer_360""").fetchall()[0]
    if contactable:
        return None
    if customers == 0:
        return "The marketing lists are empty: there are no customers in this run."
    if with_email == 0 and consenting == 0:
        return (
            "The marketing lists are empty: no customer has an e-mail address or "
            "marketing consent (is a customers source with email and "
            "marketing_consent configured in [sources.customers]?)."
        )
    if consenting == 0:
        return (
            "The marketing lists are empty: no customer has given marketing consent "
            "(check the mapping of marketing_consent in [sources.customers])."
        )
    if with_email == 0:
        return (
            "The marketing lists are empty: no customer has an e-mail address (check "
            "the mapping of email in [sources.customers])."
        )
    return (
        "The marketing lists are empty: none of the customers who consented has an e-mail address."
    )


def build_export_lists(
    con: duckdb.DuckDBPyConnection, settings: Settings, as_of: date
) -> dict[str, pa.Table]:
    """Every export list as an Arrow table with :data:`EXPORT_SCHEMA`, keyed by file stem.

    Reads ``marts.customer_360`` and (for the follow-up list) ``core.events``. One row per
    consenting customer with an e-mail address in the list, ordered by customer_id.
    """
    cfg = settings.exports
    has_events = bool(
        con.execute(
            "select 1 from duckdb_tables() where database_name = current_database() "
            "and schema_name = 'core' and table_name = 'events'"
        ).fetchall()
    )
    contacted = (
        """
        select distinct customer_id from core.events
        where event_type in (select unnest($contact_types::varchar[]))
          and event_at >= ($as_of - $follow_up_after_days::integer)::timestamp
          and event_at < ($as_of + 1)::timestamp"""
        if has_events
        else "select null::varchar as customer_id where false"
    )
    params = {
        "as_of": as_of,
        "reorder_within_days": cfg.reorder_within_days,
        "follow_up_after_days": cfg.follow_up_after_days,
        "contact_types": list(cfg.contact_event_types),
    }
    lists: dict[tuple[str, str], str] = {}
    for segment in _segment_names(con, settings):
        lists[("segment", segment)] = "c.rfm_segment = $segment"
    for name, condition in ACTION_LISTS.items():
        lists[("list", name)] = condition
    tables: dict[str, pa.Table] = {}
    for (prefix, name), condition in lists.items():
        stem = _file_stem(prefix, name)
        if stem in tables:
            raise StepError(
                f"Two export lists would both be written as {stem}; rename one "
                "of the RFM segments in [rfm.segments]."
            )
        sql = f"""
            with contacted as ({contacted}),
            contactable as (
                select * from marts.customer_360
                where marketing_consent is true and email is not null
            )
            select c.customer_id::varchar, c.email::varchar, c.full_name::varchar,
                   $segment::varchar as segment, c.recommended_action::varchar,
                   round(c.predicted_clv::double, 2) as predicted_clv,
                   c.churn_band::varchar, c.churn_reasons::varchar,
                   c.expected_next_order_date::date
            from contactable c
            where {condition}
            order by c.customer_id"""
        used = set(re.findall(r"\$([a-z_]+)", sql))
        values = {k: v for k, v in {**params, "segment": name}.items() if k in used}
        tables[stem] = (
            con.sql(sql, params=values)
            .to_arrow_table()
            .rename_columns(list(EXPORT_COLUMNS))
            .cast(EXPORT_SCHEMA)
        )
    return tables


# --- writing files ------------------------------------------------------------------------


def _open_private(path: Path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the umask may have taken bits away; 0600 exactly
    return os.fdopen(fd, "wb")


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    # A cell starting with = + - @ is run as a formula by spreadsheets (CSV injection);
    # a leading apostrophe makes it plain text. Parquet keeps the value as it is.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def _csv_column(column: pa.ChunkedArray) -> list[str]:
    """:func:`_csv_text` of every value of ``column``, with the type test done once."""
    values = column.to_pylist()
    if pa.types.is_floating(column.type):
        return ["" if v is None else f"{v:.2f}" for v in values]
    if pa.types.is_date(column.type):
        return ["" if v is None else v.isoformat() for v in values]
    return [_csv_text(v) for v in values]


def write_csv(table: pa.Table, path: Path) -> None:
    """UTF-8 CSV, header row, ``\\n`` line ends, minimal quoting; deterministic."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.column_names)
    # Column by column: one Python dict per row (to_pylist) and a type test per cell were
    # 15 s for the lists of a million customers.
    writer.writerows(zip(*(_csv_column(column) for column in table.columns)))
    with _open_private(path) as fh:
        fh.write(buffer.getvalue().encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def write_parquet(table: pa.Table, path: Path) -> None:
    """Parquet with fixed writer options, so equal tables give equal bytes."""
    with _open_private(path) as fh:
        pq.write_table(
            table,
            fh,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
            version="2.6",
            data_page_version="1.0",
            row_group_size=1 << 20,
            store_schema=True,
        )
        fh.flush()
        os.fsync(fh.fileno())


def _write_directory(
    directory: Path,
    tables: Mapping[str, pa.Table],
    as_of: date,
    run_id: str,
    extra: Mapping[str, Any] | None = None,
) -> tuple[ExportFile, ...]:
    files = []
    for stem in sorted(tables):
        table = tables[stem]
        for suffix, writer in ((".csv", write_csv), (".parquet", write_parquet)):
            path = directory / f"{stem}{suffix}"
            writer(table, path)
            files.append(
                ExportFile(path.name, table.num_rows, file_sha256(path), tuple(table.column_names))
            )
    manifest = {
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        **(extra or {}),
        "files": [
            {"name": f.name, "rows": f.rows, "sha256": f.sha256, "columns": list(f.columns)}
            for f in files
        ],
    }
    with _open_private(directory / MANIFEST_NAME) as fh:
        fh.write((json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(directory)
    return tuple(files)


def write_exports(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: date,
    run_id: str,
    out_root: Path | None = None,
) -> ExportReport:
    """Write and atomically publish ``<out_root>/<as_of>/`` (default root: exports.path):
    :func:`stage_exports`, then :func:`swap_exports`. A run publishes through
    :mod:`pipelines.publish.journal` instead, with the serving database and the report.
    """
    staged = stage_exports(con, settings, as_of, run_id, out_root)
    swap_exports(staged.directory, staged.report.directory, run_id)
    return staged.report


@dataclass(frozen=True)
class StagedExports:
    """The export directory of one run, completely written under its hidden temporary
    name ``directory``; ``report.directory`` is where it will be published."""

    directory: Path
    report: ExportReport


def stage_exports(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    as_of: date,
    run_id: str,
    out_root: Path | None = None,
) -> StagedExports:
    """Write every list of ``as_of`` into the hidden ``.<as_of>.tmp-<run_id>/`` beside
    ``<out_root>/<as_of>/`` (default root: exports.path), manifest last; nothing is
    published yet.

    Requires ``marts.customer_360``; uses ``core.events`` for the follow-up list. The
    directory is published as a whole by :func:`swap_exports`.
    """
    root = Path(out_root) if out_root is not None else settings.exports.path
    latest = root / LATEST_NAME
    if os.path.lexists(latest) and not latest.is_symlink():
        raise StepError(
            f"{latest} is a file or folder, not the pointer to the newest lists that "
            "the pipeline keeps there. Move it away and run again."
        )
    tables = build_export_lists(con, settings, as_of)
    make_dirs(root, settings.permissions.dir_mode, settings.permissions.group)
    recover_export_dirs(root)
    final = root / as_of.isoformat()
    tmp = root / f".{as_of.isoformat()}.tmp-{safe_token(run_id)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    os.mkdir(tmp, DIR_MODE)
    os.chmod(tmp, DIR_MODE)
    try:
        files = _write_directory(tmp, tables, as_of, run_id)
        marketing.write_marketing_files(con, tmp, tables)  # tool-ready profiles, suppression
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("exports for %s: %d files staged in %s", as_of, len(files), tmp)
    report = ExportReport(
        final,
        as_of,
        run_id,
        files,
        final / MANIFEST_NAME,
        {stem: t.num_rows for stem, t in tables.items()},
    )
    return StagedExports(tmp, report)


def staged_run_id(directory: Path) -> str | None:
    """The run id in ``directory``'s manifest, or None without a readable one (a
    directory that is being deleted, or not an export directory)."""
    try:
        return json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def swap_exports(staged: Path, final: Path, run_id: str) -> bool:
    """Publish the staged export directory of ``run_id`` at ``final``; returns whether it
    swapped anything.

    Safe to call again after a crash: once the Linux exchange has happened, ``staged``
    holds the *old* directory (another run id in its manifest, or a manifest already
    deleted), which is then only removed, never swapped back in.
    """
    if not staged.exists():
        return False
    if staged_run_id(staged) != run_id:
        shutil.rmtree(staged, ignore_errors=True)
        fsync_dir(staged.parent)
        return False
    publish_directory(staged, final)
    return True


LATEST_NAME = "latest"


def swap_latest_pointer(root: Path, as_of: date, run_id: str) -> Path:
    """Point ``<root>/latest`` at ``<as_of>/`` (a relative symbolic link, replaced in one
    atomic rename), so marketing tools can read the newest published lists without
    knowing the date. Returns the link's path."""
    link = root / LATEST_NAME
    tmp = root / f".{LATEST_NAME}.tmp-{safe_token(run_id)}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(as_of.isoformat(), tmp, target_is_directory=True)
    os.replace(tmp, link)
    fsync_dir(root)
    return link


def ensure_private_root(root: Path) -> None:
    """Create the exports root (0700 when we create it)."""
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(root, DIR_MODE)
        os.chmod(root, DIR_MODE)


# --- recovery ------------------------------------------------------------------------------


def recover_export_dirs(root: Path) -> list[str]:
    """Repair what a crashed export left in ``root`` (the ``<as_of>/`` directories, see
    :func:`pipelines.files.recover_directory_swaps`); returns what was done."""
    return recover_directory_swaps(root, _AS_OF, "exports")


# --- erasure ------------------------------------------------------------------------------


def remove_customers_from_exports(
    root: Path, customer_ids: Iterable[str], emails: Iterable[str], run_id: str
) -> dict[str, int]:
    """Rewrite every export directory under ``root`` without the given customers.

    A row goes when its customer_id is one of ``customer_ids`` or its e-mail (trimmed,
    lower-case) one of ``emails``. Each changed directory is rebuilt from its Parquet
    files (the CSVs are regenerated from the same rows, so both stay identical) with a
    new manifest, and swapped in atomically. Returns rows removed per ``as_of``.
    """
    ids = {str(i) for i in customer_ids}
    mails = {e.strip().lower() for e in emails if e}
    removed: dict[str, int] = {}
    if not root.is_dir() or not (ids or mails):
        return removed
    recover_export_dirs(root)
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and _AS_OF_DIR.match(p.name)):
        manifest_path = directory / MANIFEST_NAME
        if not manifest_path.is_file():
            raise StepError(
                f"Export directory {directory} has no {MANIFEST_NAME}, so its "
                "files cannot be checked for erased customers. Delete the "
                "directory (a run writes it again) and retry the erasure."
            )
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        stems = sorted({Path(f["name"]).stem for f in manifest["files"]})
        tables, dropped = {}, 0
        for stem in stems:
            parquet = directory / f"{stem}.parquet"
            if not parquet.is_file():
                raise StepError(
                    f"Export file {parquet} is listed in {manifest_path} but "
                    "missing. Delete the directory and retry the erasure."
                )
            table = pq.read_table(parquet, schema=EXPORT_SCHEMA)
            keep = [
                i
                for i, (cid, mail) in enumerate(
                    zip(table.column("customer_id").to_pylist(), table.column("email").to_pylist())
                )
                if cid not in ids and (mail or "").strip().lower() not in mails
            ]
            dropped += table.num_rows - len(keep)
            tables[stem] = table.take(pa.array(keep, pa.int64()))
        if not dropped:
            continue
        as_of = date.fromisoformat(manifest["as_of"])
        tmp = root / f".{directory.name}.tmp-{safe_token(run_id)}"
        if tmp.exists():
            shutil.rmtree(tmp)
        os.mkdir(tmp, DIR_MODE)
        os.chmod(tmp, DIR_MODE)
        try:
            extra = {
                "amended_by_erasure": run_id,
                "rows_erased": int(manifest.get("rows_erased", 0)) + dropped,
            }
            _write_directory(tmp, tables, as_of, manifest["run_id"], extra)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        publish_directory(tmp, directory)
        removed[directory.name] = dropped
    return removed
