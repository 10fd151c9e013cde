"""Validate staged rows with Great Expectations; quarantine what breaks a rule.

Each source's suite (``pipelines/load/rules.py``) runs over ``staging.<source>`` in
chunks; ``pipelines/load/quarantine.py`` writes its verdicts and checks the batch limits.

Suites run on Arrow/pandas batches (GX's SQL data source over duckdb_engine returned no
rows on this stack). Every suite carries a canary expectation that must fail, so a suite
that silently passes everything is caught.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import duckdb

from pipelines.config import Settings
from pipelines.errors import StepError
from pipelines.load import processing
from pipelines.load.clean import STAGING_ORDER
from pipelines.load.quarantine import (
    FileOverLimitError,
    ValidationReport,
    _apply_failures,
    check_batch_limits,
    ensure_quarantine_table,
)
from pipelines.load.rules import Rule, suite_rules
from pipelines.sqlrun import ensure_bookkeeping_tables

__all__ = [
    "ValidationReport",
    "check_batch_limits",
    "suite_rules",
    "validate_pending",
    "validate_source",
]

_context = None


def _gx():
    """One ephemeral GX context per process (its import and set-up cost seconds)."""
    global _context
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    if _context is None:
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        _context = gx.get_context(mode="ephemeral")
        try:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            _context.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # progress bars are cosmetic; the API moved between releases
            pass
    return gx, _context


# The project's rule severities as GX's own (critical / warning / info): a row rule drops
# the row, a field rule only blanks one field, the canary is informational (it must fail).
GX_SEVERITY = {"row": "critical", "field": "warning", "canary": "info"}


def _expectation(gx, rule: Rule):
    """The GX expectation of ``rule``: its row condition as a GX condition object and its
    severity in GX's native field (the string conditions and ``meta`` severities were
    deprecated in GX 1.9); ``meta.rule`` names the rule in results and Data Docs."""
    from great_expectations.expectations.row_conditions import Column

    cls = getattr(gx.expectations, rule.kind)
    kwargs = dict(rule.kwargs)
    # a column-pair rule names its columns in kwargs; its column is the field it blanks
    if rule.column is not None and "column_B" not in kwargs:
        kwargs["column"] = rule.column
    if rule.only_if_present is not None:
        kwargs["row_condition"] = Column(rule.only_if_present).is_not_null()
    return cls(meta={"rule": rule.name}, severity=GX_SEVERITY[rule.severity], **kwargs)


def build_suite(gx, source: str, settings: Settings):
    """The GX expectation suite ``<source>_suite`` of :func:`suite_rules`."""
    return gx.ExpectationSuite(
        name=f"{source}_suite",
        expectations=[_expectation(gx, r) for r in suite_rules(source, settings)],
    )


def suite_json(source: str, settings: Settings) -> dict:
    """The suite of ``source`` as GX stores it (``gx/expectations/<source>_suite.json``)
    without the GX version and ids, so the checked-in copy changes only with the rules."""
    gx, _ = _gx()
    suite = build_suite(gx, source, settings).to_json_dict()
    suite.pop("meta", None)
    suite.pop("id", None)
    for expectation in suite["expectations"]:
        expectation.pop("id", None)
    return suite


def validate_pending(
    con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, *, full_refresh: bool = False
) -> list[ValidationReport]:
    """Validate the rows of every file the clean step staged this run, stop the run on a
    file that is mostly bad, and record the files as processed.

    A new file that stops the run is rejected (left out from then on, see
    ``pipelines/load/processing.py``); the error names it. One report per source.
    """
    reports = [
        validate_source(con, name, settings, run_id, full_refresh=full_refresh)
        for name in STAGING_ORDER
    ]
    checked = [(r.source, sha) for r in reports for sha in r.files.pending]
    try:
        check_batch_limits(con, settings, checked)
    except FileOverLimitError as exc:
        files = next(r.files for r in reports if r.source == exc.source)
        # a file accepted before, which fails now because the rules or the limit changed,
        # is not rejected: reverting the change brings it back
        if exc.file_sha256 and exc.file_sha256 not in files.processed_before:
            processing.reject_file(con, files, exc.file_sha256, run_id, str(exc))
        raise
    for report in reports:
        processing.record_processed(con, report.files, run_id, report.per_file)
    return reports


def validate_source(
    con: duckdb.DuckDBPyConnection,
    source: str,
    settings: Settings,
    run_id: str,
    *,
    full_refresh: bool = False,
) -> ValidationReport:
    """Run ``source``'s suite over the staged rows of its pending files (those the clean
    step staged this run, :mod:`pipelines.load.processing`) and apply its verdicts.

    Replaces those files' rows in ``quarantine.<source>`` (one row per failing row: rules,
    original values), blanks failing fields in ``staging.<source>`` (originals in
    ``quarantine.field_issues``) and appends one row per rule to
    ``audit.validation_results``. Rows of files processed before are not read.
    """
    ensure_bookkeeping_tables(con)
    files = processing.find_source_files(con, settings, source, full_refresh=full_refresh)
    if not files.pending:
        # Nothing new: Great Expectations (10 s to import) is not even loaded.
        ensure_quarantine_table(con, source)
        return ValidationReport(source, 0, 0, 0, {}, files)
    processing.set_pending(con, files)
    gx, context = _gx()
    rules = suite_rules(source, settings)
    extra = ""
    if source == "events":
        extra = (
            ", case when survey = 'nps' then true end as is_nps"
            ", case when survey = 'csat' then true end as is_csat"
        )
    columns = sorted(
        {c for r in rules for c in (r.column, r.only_if_present) if c} - {"is_nps", "is_csat"}
        | {"_ingested_at"}
    )
    types = dict(
        con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'staging' and table_name = ?",
            [source],
        ).fetchall()
    )
    # No ORDER BY: every rule judges one row at a time, so the chunks may hold rows in any
    # order, and the verdicts are sorted by key when written. Sorting 10M rows cost ~3 s.
    reader = con.sql(
        f"select _file_sha256, _row_number, "
        f"{', '.join(_gx_column(c, types.get(c, '')) for c in columns)}{extra} "
        f"from staging.{source} "
        f"where _file_sha256 in (select file_sha256 from {processing.PENDING_TABLE})"
    ).to_arrow_reader(VALIDATION_CHUNK_ROWS)
    definition = _validation_definition(gx, context, source, build_suite(gx, source, settings))
    by_name = {r.name: r for r in rules}
    failing: dict[str, list[tuple[str, int]]] = {}
    totals: dict[str, list[int]] = {r.name: [0, 0] for r in rules if r.severity != "canary"}
    rows_checked = 0
    # One chunk at a time bounds memory: a pandas frame of every row, plus the copies GX
    # makes while computing metrics, took 9-13 GB at 10M rows (1M-row chunks: 6.6 GiB
    # peak at L, 500k: 5.6 GiB, in the same time; with DuckDB at 1 GB, 500k: 2.35-2.50 GiB,
    # 250k: 1.89 GiB, in the same CPU time). The chunks are closed on the way out, so
    # no thread is still reading from DuckDB when an error leaves here.
    with contextlib.closing(_prefetched(_chunks(reader))) as chunks:
        for shas, row_numbers, frame in chunks:
            result = definition.run(
                batch_parameters={"dataframe": frame}, result_format={"result_format": "COMPLETE"}
            )
            canary_failed = False
            for res in result.results:
                rule = by_name[res.expectation_config.meta["rule"]]
                if res.exception_info and res.exception_info.get("raised_exception"):
                    raise StepError(
                        f"Validation of source '{source}' could not evaluate rule "
                        f"'{rule.name}': {res.exception_info.get('exception_message')}. This is "
                        "a bug in the suite, not in your data; please report it."
                    )
                if rule.severity == "canary":
                    canary_failed = not res.success
                    continue
                indices = res.result.get("unexpected_index_list") or []
                if indices and isinstance(indices[0], dict):
                    indices = [next(iter(i.values())) for i in indices]
                failing.setdefault(rule.name, []).extend(
                    (shas[i], int(row_numbers[i])) for i in indices
                )
                totals[rule.name][0] += int(res.result.get("element_count") or len(frame))
                totals[rule.name][1] += int(res.result.get("unexpected_count") or len(indices))
            if not canary_failed:
                raise StepError(
                    f"The validation suite of source '{source}' passed its canary "
                    "expectation, which must always fail: the suite is not "
                    "evaluating rules, so nothing is published. Check the Great "
                    "Expectations installation (make setup)."
                )
            rows_checked += len(frame)
    now = datetime.now()
    audit_rows = [
        [
            run_id,
            source,
            name,
            by_name[name].kind,
            by_name[name].column,
            by_name[name].severity,
            unexpected == 0,
            elements,
            unexpected,
            now,
        ]
        for name, (elements, unexpected) in totals.items()
    ]
    if audit_rows:
        con.executemany(
            "insert into audit.validation_results values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", audit_rows
        )
    return _apply_failures(
        con, files, rows_checked, {k: v for k, v in failing.items() if v}, by_name, run_id
    )


VALIDATION_CHUNK_ROWS = 250_000

# pandas' nanosecond timestamps span 1677-09-21 .. 2262-04-11. Dates outside are clamped
# to just inside, which keeps every rule's verdict: the configured earliest date and the
# plausible birth dates lie well within, and a year-2999 timestamp is still after ingestion.
_NS_MIN, _NS_MAX = "1678-01-01", "2262-01-01"


def _gx_column(column: str, data_type: str) -> str:
    """The select expression that hands ``column`` to GX: temporal columns as timestamps
    within pandas' nanosecond range (see ``_chunk``), decimals as doubles, everything else
    as it is."""
    if data_type.startswith(("TIMESTAMP", "DATE")):
        # DuckDB's greatest/least skip NULLs, so a missing value must stay missing here
        return (
            f"case when {column} is not null then least(greatest({column}::timestamp, "
            f"timestamp '{_NS_MIN}'), timestamp '{_NS_MAX}') end as {column}"
        )
    if data_type.startswith("DECIMAL"):
        # pandas holds decimals as Python objects, which GX then hashes one by one; the
        # rules on these columns (present, score ranges) read the same on doubles
        return f"{column}::double as {column}"
    return column


def _prefetched(chunks):
    """The items of ``chunks``, each next one made in a thread while the caller works on
    the current one: DuckDB's scan and the Arrow-to-pandas conversion let go of the GIL,
    so they use the core that GX's Python leaves idle."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation-chunks") as pool:
        pending = pool.submit(next, chunks, None)
        while (item := pending.result()) is not None:
            pending = pool.submit(next, chunks, None)
            yield item


def _chunks(reader):
    """(file sha256s, row numbers, pandas frame of the rule columns) per record batch, or
    one empty chunk for an empty table (the suite still runs, so its canary is still
    checked).

    The row keys stay out of the frame: GX fingerprints every batch by hashing all its
    columns, and 64-character sha256 strings were a third of the suite's time. Timestamps
    become nanoseconds because GX compares only ``datetime64[ns]`` columns vectorised; the
    microsecond columns pandas 3 gets from Arrow went through a Python call per value.
    """
    import pyarrow as pa

    # DuckDB hands out record batches of ~123k rows whatever size was asked for; GX has a
    # fixed cost per validation, so batches are gathered (and cut) into chunks of
    # VALIDATION_CHUNK_ROWS rows.
    pending, rows, empty = [], 0, True
    for batch in reader:
        empty = False
        pending.append(batch)
        rows += batch.num_rows
        while rows >= VALIDATION_CHUNK_ROWS:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield _chunk(table.slice(0, VALIDATION_CHUNK_ROWS))
            rest = table.slice(VALIDATION_CHUNK_ROWS)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows or empty:
        yield _chunk(pa.Table.from_batches(pending, schema=reader.schema))


def _chunk(table):
    import pyarrow as pa

    keys = {"_file_sha256", "_row_number"}
    # Text columns go in as categoricals: GX's fingerprint hashes a categorical through its
    # distinct values, a plain text column by factorising every value first (4x slower).
    rules = pa.Table.from_arrays(
        [
            col.combine_chunks().dictionary_encode() if pa.types.is_string(col.type) else col
            for name, col in zip(table.schema.names, table.columns)
            if name not in keys
        ],
        names=[n for n in table.schema.names if n not in keys],
    )
    frame = rules.to_pandas(coerce_temporal_nanoseconds=True)
    return (
        table.column("_file_sha256").to_numpy(zero_copy_only=False),
        table.column("_row_number").to_numpy(zero_copy_only=False),
        frame,
    )


def _validation_definition(gx, context, source: str, suite):
    """The source's suite bound to a whole-dataframe batch of the ephemeral context.

    ``ValidationDefinition.run`` loads each batch once; ``Batch.validate`` loaded (and
    hashed) it twice.
    """
    name = f"staging_{source}"
    try:
        datasource = context.data_sources.get("crm_batches")
    except Exception:
        datasource = context.data_sources.add_pandas("crm_batches")
    try:
        asset = datasource.get_asset(name)
    except Exception:
        asset = datasource.add_dataframe_asset(name)
    try:
        batch_def = asset.get_batch_definition("whole")
    except Exception:
        batch_def = asset.add_batch_definition_whole_dataframe("whole")
    # the rules can change between runs in one process (settings), so both are replaced
    for store, key in (
        (context.validation_definitions, f"{source}_validation"),
        (context.suites, f"{source}_suite"),
    ):
        try:
            store.delete(key)
        except Exception:
            pass
    suite = context.suites.add(suite)
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{source}_validation", data=batch_def, suite=suite)
    )
