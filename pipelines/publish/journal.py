"""Publish a run's outputs as one unit: staged beside their destinations, then swapped in
together under a journal, with a record of which run is published.

A run's outputs are the export directory ``exports/<as_of>/``, the ``exports/latest``
pointer, the serving database and the report ``reports/<as_of>/report.html``. Each is
first written completely under a hidden temporary name beside its destination (the
``stage_*`` functions of :mod:`~pipelines.publish.exports`, :mod:`~pipelines.publish.serving`,
:mod:`~pipelines.publish.report`). Only when every one is staged does :func:`publish_staged`

1. write the publish journal (``<working database>.publish-journal.json``: the run, and
   per output its staged and final path), flushed to disk;
2. swap the outputs in, one atomic rename each (exports, serving database, report, then
   ``exports/latest``);
3. record the run in ``audit.publications`` (run_id, as_of, published_at, outputs);
4. delete the journal.

A failure while staging (a full disk, say) publishes nothing: the staged files are
removed and every output stays the previous published run's. A crash or kill between
the journal and its deletion leaves the journal: :func:`complete_interrupted_publish`,
which every ``crm`` command that opens the working database for writing runs first,
rolls the publish forward (every output in the journal was complete before the journal
was written) and records it. So the outputs on disk are, once any command has run, all
one run's: the published run in ``audit.publications``. Between the first and the last
rename (milliseconds) a reader can see the new exports beside the old serving database;
no file is ever partial.

Nothing here knows how an output is built; it only moves staged files into place.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from pipelines.config import Settings
from pipelines.errors import StepError
from pipelines.files import fsync_dir, fsync_file
from pipelines.publish.data_docs import DATA_DOCS_DIR
from pipelines.sqlrun import ensure_bookkeeping_tables

log = logging.getLogger(__name__)


class PublishError(StepError):
    """Publishing stopped; the message says exactly what was and was not published."""


# The kinds of output, in the order they are swapped in. The Data Docs come before the
# report that links them; "latest" comes last: the pointer names a directory that must
# already hold the run's lists.
OUTPUT_KINDS = ("exports", "serving", "data_docs", "report", "latest")


@dataclass(frozen=True)
class StagedOutput:
    """One output of a run, completely written at ``staged``, to be moved to ``final``
    (for ``latest``, ``staged`` is the as-of directory's name the pointer will name)."""

    kind: str
    staged: str
    final: str


def journal_path(settings: Settings) -> Path:
    """Where the publish journal of this warehouse lives: beside the working database."""
    wh = settings.warehouse.path
    return wh.with_name(f"{wh.name}.publish-journal.json")


def last_published_run(con: duckdb.DuckDBPyConnection) -> str | None:
    """The run id of the newest published run (``audit.publications``), or None."""
    ensure_bookkeeping_tables(con)
    rows = con.execute(
        "select run_id from audit.publications order by published_at desc limit 1"
    ).fetchall()
    return rows[0][0] if rows else None


def discard_staged(outputs: list[StagedOutput]) -> None:
    """Remove staged outputs that will not be published (a failed or interrupted stage)."""
    for output in outputs:
        if output.kind == "latest":
            continue
        path = Path(output.staged)
        with contextlib.suppress(FileNotFoundError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
                wal = path.with_name(path.name + ".wal")
                if wal.exists():
                    wal.unlink()


def publish_staged(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_id: str,
    as_of: date,
    outputs: list[StagedOutput],
) -> dict[str, str]:
    """Swap the completely staged ``outputs`` of ``run_id`` in, under the journal, and
    record the run in ``audit.publications``. Returns kind -> final path, in swap order.

    Raises :class:`StepError` when a rename fails: the message says which outputs are
    the new run's and which the previous run's; the journal stays, and the next ``crm``
    command completes the publish.
    """
    from pipelines.files import apply_permissions

    perms = settings.permissions
    # the modes of crm.toml's [permissions], set while nobody can see the files yet
    for output in outputs:
        if output.kind != "latest":
            apply_permissions(Path(output.staged), perms.file_mode, perms.dir_mode, perms.group)
        if output.kind == "report":  # reports/<as_of>/ is the pipeline's own folder
            os.chmod(Path(output.final).parent, perms.dir_mode)
            if perms.group:
                shutil.chown(Path(output.final).parent, group=perms.group)
    journal = journal_path(settings)
    entry = {
        "run_id": run_id,
        "as_of": as_of.isoformat(),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "outputs": [asdict(o) for o in sorted(outputs, key=lambda o: OUTPUT_KINDS.index(o.kind))],
    }
    tmp = journal.with_name(journal.name + ".tmp")
    tmp.write_text(json.dumps(entry, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    fsync_file(tmp)
    os.replace(tmp, journal)
    fsync_dir(journal.parent)
    return _roll_forward(con, journal, entry)


def complete_interrupted_publish(con: duckdb.DuckDBPyConnection, settings: Settings) -> str | None:
    """Finish a publish that a crash or kill interrupted (its journal is still there):
    swap in what was not swapped yet, record the run as published, remove the journal.

    Returns one sentence saying what was completed, or None when nothing was pending.
    """
    journal = journal_path(settings)
    with contextlib.suppress(FileNotFoundError):
        journal.with_name(journal.name + ".tmp").unlink()  # killed before the journal
    if not journal.exists():
        remove_unpublished_staging(settings)
        return None
    entry = json.loads(journal.read_text(encoding="utf-8"))
    done = _roll_forward(con, journal, entry)
    remove_unpublished_staging(settings)
    message = (
        f"The publish of run {entry['run_id']} (as of {entry['as_of']}) was interrupted; "
        f"it has now been completed: {', '.join(done.values())} are that run's."
    )
    log.warning(message)
    return message


def remove_unpublished_staging(settings: Settings) -> None:
    """Delete what a run killed while staging left (no journal names it, so it was never
    complete): the hidden ``.tmp-`` exports, serving database, report and pointer."""
    from pipelines.files import remove_stale_temp_files
    from pipelines.publish import exports

    root = settings.exports.path
    exports.recover_export_dirs(root)
    for link in root.glob(f".{exports.LATEST_NAME}.tmp-*"):
        link.unlink()
    remove_stale_temp_files(settings.warehouse.serving_path)
    for stale in settings.warehouse.serving_path.parent.glob(".*.tmp-*.wal"):
        stale.unlink()
    if settings.report.path.is_dir():
        for directory in settings.report.path.iterdir():
            if directory.is_dir():
                remove_stale_temp_files(directory / "report.html")
                for site in directory.glob(f".{DATA_DOCS_DIR}.tmp-*"):
                    shutil.rmtree(site, ignore_errors=True)


def pending_publish(settings: Settings) -> dict | None:
    """The journal of an interrupted publish (run_id, as_of, outputs), or None."""
    journal = journal_path(settings)
    try:
        return json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _roll_forward(con: duckdb.DuckDBPyConnection, journal: Path, entry: dict) -> dict[str, str]:
    from pipelines.publish import data_docs, exports, serving

    run_id = entry["run_id"]
    swapped: dict[str, str] = {}
    for output in (StagedOutput(**o) for o in entry["outputs"]):
        final = Path(output.final)
        try:
            if output.kind == "exports":
                exports.swap_exports(Path(output.staged), final, run_id)
            elif output.kind == "serving":
                if Path(output.staged).exists():
                    serving.swap_serving_database(Path(output.staged), final, keep_mode=False)
            elif output.kind == "data_docs":
                data_docs.swap_data_docs(Path(output.staged), final, run_id)
            elif output.kind == "report":
                if Path(output.staged).exists():
                    os.replace(output.staged, final)
                    fsync_dir(final.parent)
            elif output.kind == "latest":
                exports.swap_latest_pointer(final.parent, date.fromisoformat(output.staged), run_id)
            else:
                raise ValueError(f"unknown output kind {output.kind!r} in {journal}")
        except OSError as exc:
            pending = [o["final"] for o in entry["outputs"] if o["kind"] not in swapped]
            raise StepError(
                f"Publishing run {run_id} stopped while moving {output.staged} to "
                f"{final} ({exc.strerror or exc}). Already the new run's: "
                f"{', '.join(swapped.values()) or 'none'}. Still the previous run's: "
                f"{', '.join(pending)}. The journal {journal} is kept; the next crm "
                "command completes the publish once the cause is fixed."
            ) from exc
        swapped[output.kind] = str(final)
    ensure_bookkeeping_tables(con)
    con.execute(
        "insert or replace into audit.publications (run_id, as_of, published_at, outputs) "
        "values (?, ?, ?, ?)",
        [
            run_id,
            entry["as_of"],
            datetime.now(UTC).replace(tzinfo=None),
            json.dumps(swapped),
        ],
    )
    journal.unlink()
    fsync_dir(journal.parent)
    return swapped
