"""Validate staged rows with Great Expectations; quarantine what breaks a rule.

One suite per source, derived from the canonical contract. Each expectation is a named
rule with a severity:

- ``row``: the row cannot be used (no customer, no parseable timestamp or amount, a
  score out of range). It goes to ``quarantine.<source>`` with every rule it broke and
  its original values, and is left out of ``core``.
- ``field``: one optional profile field is wrong (an e-mail without an @, a birth date
  that does not parse). The row is kept, that field is blanked, and the original value
  is kept in ``quarantine.field_issues``.

Suites run on Arrow/pandas batches (GX's SQL data source over duckdb_engine returned no
rows on this stack). Every suite carries a canary expectation that must fail, so a suite
that silently passes everything is caught.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from pipelines.config import Settings
from pipelines.errors import InputError, StepError
from pipelines.sqlrun import ensure_bookkeeping_tables

log = logging.getLogger(__name__)

CANARY_RULE = "canary_must_fail"
STATUSES = ("completed", "cancelled", "refunded", "returned")
# Control characters (NUL, escape, ...) are never part of a name or a city; they come from
# broken exports and would reach the marketing files. Tab and line breaks are left to the
# CSV writer's quoting.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# An amount of ten billion or more in one line is a broken export (a quantity or a price
# in the wrong column), never a sale; it would also overflow the staging decimals.
MAX_LINE_AMOUNT = 1e10
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


@dataclass(frozen=True)
class Rule:
    """A named expectation: ``kind`` is a GX expectation class name, ``column`` the staged
    column it checks (and blanks, for field rules), ``kwargs`` its arguments."""

    name: str
    kind: str
    column: str | None
    severity: str  # row | field | canary
    kwargs: tuple[tuple[str, Any], ...] = ()
    only_if_present: str | None = None  # text column that must be non-null for the check

    @property
    def field(self) -> str | None:
        """The canonical field the rule is about (rule names start with it)."""
        for suffix in (
            "_present",
            "_parseable",
            "_not_before_earliest_date",
            "_not_after_ingestion",
            "_numeric",
            "_known",
            "_shape",
            "_valid",
            "_plausible",
            "_score_in_range",
            "_convertible",
            "_printable",
        ):
            if self.name.endswith(suffix):
                field = self.name[: -len(suffix)]
                return {"nps": "value", "csat": "value"}.get(field, field)
        return None


@dataclass(frozen=True)
class ValidationReport:
    source: str
    rows_checked: int
    rows_quarantined: int
    fields_blanked: int
    failures_by_rule: dict[str, int]


def suite_rules(source: str, settings: Settings) -> list[Rule]:
    """The rules of one source's suite, in the order they are reported."""
    earliest = datetime.combine(settings.validation.earliest_date, datetime.min.time())

    def present(col: str) -> Rule:
        return Rule(f"{col}_present", "ExpectColumnValuesToNotBeNull", col, "row")

    def ts_rules(col: str, field: str) -> list[Rule]:
        return [
            Rule(f"{field}_parseable", "ExpectColumnValuesToNotBeNull", col, "row"),
            Rule(
                f"{field}_not_before_earliest_date",
                "ExpectColumnValuesToBeBetween",
                col,
                "row",
                (("min_value", earliest),),
            ),
            Rule(
                f"{field}_not_after_ingestion",
                "ExpectColumnPairValuesAToBeGreaterThanB",
                None,
                "row",
                (
                    ("column_A", "_ingested_at"),
                    ("column_B", col),
                    ("or_equal", True),
                    ("ignore_row_if", "either_value_is_missing"),
                ),
            ),
        ]

    def numeric(col: str, severity: str = "row") -> Rule:
        return Rule(
            f"{col}_numeric",
            "ExpectColumnValuesToNotBeNull",
            col,
            severity,
            only_if_present=f"{col}_text",
        )

    if source == "transactions":
        rules = [
            present("customer_id"),
            *ts_rules("order_at", "order_ts"),
            Rule("amount_numeric", "ExpectColumnValuesToNotBeNull", "amount_in_currency", "row"),
            Rule(
                "amount_plausible",
                "ExpectColumnValuesToBeBetween",
                "amount_in_currency",
                "row",
                (
                    ("min_value", -MAX_LINE_AMOUNT),
                    ("max_value", MAX_LINE_AMOUNT),
                    ("strict_min", True),
                    ("strict_max", True),
                ),
            ),
            numeric("quantity"),
            numeric("unit_price"),
            Rule(
                "status_known",
                "ExpectColumnValuesToBeInSet",
                "status",
                "row",
                (("value_set", list(STATUSES)),),
            ),
            Rule(
                "currency_convertible",
                "ExpectColumnValuesToBeNull",
                "unconvertible_currency",
                "row",
            ),
        ]
    elif source == "customers":
        today = datetime.now()
        rules = [
            present("customer_id"),
            Rule(
                "email_shape",
                "ExpectColumnValuesToMatchRegex",
                "email",
                "field",
                (("regex", EMAIL_PATTERN),),
            ),
            Rule(
                "phone_valid",
                "ExpectColumnValuesToNotBeNull",
                "phone",
                "field",
                only_if_present="phone_text",
            ),
            Rule(
                "birth_date_parseable",
                "ExpectColumnValuesToNotBeNull",
                "birth_date",
                "field",
                only_if_present="birth_date_text",
            ),
            Rule(
                "birth_date_plausible",
                "ExpectColumnValuesToBeBetween",
                "birth_date",
                "field",
                (("min_value", datetime(1900, 1, 1)), ("max_value", today)),
            ),
            Rule(
                "signup_ts_parseable",
                "ExpectColumnValuesToNotBeNull",
                "signup_at",
                "field",
                only_if_present="signup_text",
            ),
            Rule(
                "signup_ts_plausible",
                "ExpectColumnValuesToBeBetween",
                "signup_at",
                "field",
                (("min_value", earliest), ("max_value", today)),
            ),
            Rule(
                "updated_at_parseable",
                "ExpectColumnValuesToNotBeNull",
                "updated_at",
                "field",
                only_if_present="updated_text",
            ),
            Rule(
                "updated_at_plausible",
                "ExpectColumnValuesToBeBetween",
                "updated_at",
                "field",
                (("min_value", earliest), ("max_value", today)),
            ),
            Rule(
                "full_name_printable",
                "ExpectColumnValuesToNotMatchRegex",
                "full_name",
                "field",
                (("regex", CONTROL_CHARACTERS),),
            ),
            Rule(
                "city_printable",
                "ExpectColumnValuesToNotMatchRegex",
                "city",
                "field",
                (("regex", CONTROL_CHARACTERS),),
            ),
            Rule(
                "marketing_consent_known",
                "ExpectColumnValuesToNotBeNull",
                "marketing_consent",
                "field",
                only_if_present="marketing_consent_text",
            ),
        ]
    elif source == "events":
        rules = [
            present("customer_id"),
            *ts_rules("event_at", "event_ts"),
            present("event_type"),
            numeric("value"),
            Rule(
                "nps_score_in_range",
                "ExpectColumnValuesToBeBetween",
                "value",
                "row",
                (("min_value", 0), ("max_value", 10)),
                only_if_present="is_nps",
            ),
            Rule(
                "csat_score_in_range",
                "ExpectColumnValuesToBeBetween",
                "value",
                "row",
                (("min_value", 1), ("max_value", 5)),
                only_if_present="is_csat",
            ),
        ]
    else:
        raise ValueError(f"no suite for source {source!r}")
    return [
        *rules,
        Rule(CANARY_RULE, "ExpectTableRowCountToEqual", None, "canary", (("value", -1),)),
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


def _expectation(gx, rule: Rule):
    cls = getattr(gx.expectations, rule.kind)
    kwargs = dict(rule.kwargs)
    if rule.column is not None:
        kwargs["column"] = rule.column
    if rule.only_if_present is not None:
        kwargs["row_condition"] = f"{rule.only_if_present}.notnull()"
        kwargs["condition_parser"] = "pandas"
    return cls(meta={"rule": rule.name, "severity": rule.severity}, **kwargs)


def validate_source(
    con: duckdb.DuckDBPyConnection, source: str, settings: Settings, run_id: str
) -> ValidationReport:
    """Run ``source``'s suite over ``staging.<source>`` and apply its verdicts.

    Writes ``quarantine.<source>`` (one row per failing row: rules, original values),
    blanks failing fields in ``staging.<source>`` (originals in ``quarantine.field_issues``)
    and appends one row per rule to ``audit.validation_results``.
    """
    ensure_bookkeeping_tables(con)
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
        f"from staging.{source}"
    ).to_arrow_reader(VALIDATION_CHUNK_ROWS)
    definition = _validation_definition(gx, context, source, [_expectation(gx, r) for r in rules])
    by_name = {r.name: r for r in rules}
    failing: dict[str, list[tuple[str, int]]] = {}
    totals: dict[str, list[int]] = {r.name: [0, 0] for r in rules if r.severity != "canary"}
    rows_checked = 0
    # One chunk at a time bounds memory: a pandas frame of every row, plus the copies GX
    # makes while computing metrics, took 9-13 GB at 10M rows (1M-row chunks: 6.6 GiB
    # peak at L, 500k: 5.6 GiB, in the same time). The chunks are closed on the way out, so
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
        con, source, rows_checked, {k: v for k, v in failing.items() if v}, by_name, run_id
    )


VALIDATION_CHUNK_ROWS = 500_000

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


def _validation_definition(gx, context, source: str, expectations: list):
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
    suite = context.suites.add(
        gx.ExpectationSuite(name=f"{source}_suite", expectations=expectations)
    )
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{source}_validation", data=batch_def, suite=suite)
    )


def _apply_failures(
    con,
    source: str,
    rows_checked: int,
    failing: dict[str, list[tuple[str, int]]],
    rules: dict[str, Rule],
    run_id: str,
) -> ValidationReport:
    """Write the suite's verdicts: ``failing`` maps a rule to the (file sha256, row
    number) keys of the rows that broke it."""
    import pyarrow as pa

    row_fail: dict[tuple[str, int], list[str]] = {}
    field_fail: list[tuple[str, int, str, str]] = []
    for name, keys in failing.items():
        rule = rules[name]
        for key in keys:
            if rule.severity == "row":
                row_fail.setdefault(key, []).append(name)
            else:
                field_fail.append((key[0], key[1], name, rule.column))
    con.execute(f"""
        create or replace table quarantine.{source} as
        select null::varchar as run_id, null::varchar as rules, r.*
        from raw.{source} r limit 0""")
    if row_fail:
        keys = sorted(row_fail)
        failures = pa.table(
            {
                "_file_sha256": pa.array([k[0] for k in keys], pa.string()),
                "_row_number": pa.array([k[1] for k in keys], pa.int64()),
                "rules": pa.array([", ".join(row_fail[k]) for k in keys], pa.string()),
            }
        )
        con.register("_failures", failures)
        con.execute(
            f"""
            insert into quarantine.{source}
            select $run_id, f.rules, r.*
            from _failures f
            join raw.{source} r using (_file_sha256, _row_number)""",
            {"run_id": run_id},
        )
        con.unregister("_failures")
    ensure_bookkeeping_tables(con)
    con.execute("delete from quarantine.field_issues where source = ?", [source])
    if field_fail:
        field_fail.sort()
        issues = pa.table(
            {
                "_file_sha256": pa.array([f[0] for f in field_fail], pa.string()),
                "_row_number": pa.array([f[1] for f in field_fail], pa.int64()),
                "rule": pa.array([f[2] for f in field_fail], pa.string()),
                "field": pa.array([f[3] for f in field_fail], pa.string()),
            }
        )
        con.register("_issues", issues)
        for column in sorted({f[3] for f in field_fail}):
            text_col = _original_column(source, column)
            con.execute(
                f"""
                insert into quarantine.field_issues
                select $run_id, $source, i._file_sha256, i._row_number, i.rule, i.field,
                       r.{text_col}
                from _issues i join raw.{source} r using (_file_sha256, _row_number)
                where i.field = $field""",
                {"run_id": run_id, "source": source, "field": column},
            )
            con.execute(
                f"""
                update staging.{source} s set {column} = null
                from _issues i
                where i.field = $field and s._file_sha256 = i._file_sha256
                  and s._row_number = i._row_number""",
                {"field": column},
            )
        con.unregister("_issues")
    counts = {name: len(keys) for name, keys in failing.items()}
    report = ValidationReport(source, rows_checked, len(row_fail), len(field_fail), counts)
    log.info(
        "validate %s: %d rows, %d quarantined, %d fields blanked",
        source,
        rows_checked,
        len(row_fail),
        len(field_fail),
    )
    return report


def _original_column(source: str, column: str) -> str:
    """The raw (as delivered) column behind a staged column."""
    originals = {"signup_at": "signup_ts", "phone": "phone"}
    return originals.get(column, column)


def check_batch_limits(con: duckdb.DuckDBPyConnection, settings: Settings, run_id: str) -> None:
    """Stop the run when a file is mostly bad or there are no usable transactions.

    The share counts rows the reader rejected plus rows the suite quarantined, over the
    rows read, per file ingested in this run.
    """
    limit = settings.validation.max_failed_share
    # Failing rows are matched to their file by source and sha256: one file can feed
    # several sources (raw.files has a row per source).
    rows = con.execute(
        """
        with files as (
            select file_sha256, source, file_path, rows_read
            from raw.files where run_id = $run_id and rows_read > 0
        ),
        quarantined as (
            select 'transactions' as source, _file_sha256, rules from quarantine.transactions
            union all select 'customers', _file_sha256, rules from quarantine.customers
            union all select 'events', _file_sha256, rules from quarantine.events
            union all select source, _file_sha256, 'reader: ' || reason from raw.rejected_rows
        ),
        per_rule as (
            select source, _file_sha256, unnest(string_split(rules, ', ')) as rule
            from quarantined
        ),
        top_rule as (
            select source, _file_sha256, arg_max(rule, n) as rule from (
                select source, _file_sha256, rule, count(*) as n from per_rule group by all)
            group by all
        )
        select f.source, f.file_path, f.rows_read, count(q._file_sha256) as failed,
               any_value(t.rule) as top_rule,
               count(q._file_sha256) filter (where q.rules like 'reader: %') as unreadable
        from files f
        left join quarantined q on q.source = f.source and q._file_sha256 = f.file_sha256
        left join top_rule t on t.source = f.source and t._file_sha256 = f.file_sha256
        group by all
        having count(q._file_sha256) > $limit * f.rows_read
        order by f.file_path, f.source""",
        {"run_id": run_id, "limit": limit},
    ).fetchall()
    if rows:
        source, path, read, failed, rule, unreadable = rows[0]
        if unreadable * 2 > failed:
            # Mostly records the reader could not split: the file's format, not its values.
            raise InputError(
                f"File {path} (source '{source}'): {failed} of {read} rows "
                f"({failed / read:.0%}) failed, more than the allowed {limit:.0%}; "
                f"{unreadable} of them could not be read as records (most often: "
                f"{rule.removeprefix('reader: ')}). Check the delimiter, quote and "
                f"encoding options in [sources.{source}] and that the file is not "
                "truncated, or raise [validation].max_failed_share. The unreadable lines "
                "are listed, with their line numbers, in raw.rejected_rows of the working "
                "database."
            )
        hint = _failure_hint(rule, source, settings)
        raise InputError(
            f"File {path} (source '{source}'): {failed} of {read} rows "
            f"({failed / read:.0%}) failed validation, more than the allowed "
            f"{limit:.0%}. {hint}Check the column mapping and the timestamp_format, "
            "delimiter, encoding and decimal_comma options in [sources." + source + "], "
            "or raise [validation].max_failed_share. Failing rows are listed in "
            f"quarantine.{source} of the working database."
        )
    usable = con.execute("""
        select count(*) from staging.transactions s
        where not exists (select 1 from quarantine.transactions q
                          where q._file_sha256 = s._file_sha256
                            and q._row_number = s._row_number)""").fetchall()[0][0]
    if usable == 0:
        files = con.execute(
            "select count(*) from raw.files where source = 'transactions'"
        ).fetchall()[0][0]
        top = con.execute("""
            select rule from (select unnest(string_split(rules, ', ')) as rule
                              from quarantine.transactions)
            group by rule order by count(*) desc, rule limit 1""").fetchall()
        top = top[0] if top else None
        hint = _failure_hint(top[0], "transactions", settings) if top else ""
        raise InputError(
            f"There are no usable transaction rows ({files} transaction file(s) found for "
            f"pattern {settings.sources['transactions'].path}). {hint}Check "
            "[sources.transactions].path and that the files hold data rows."
        )


def _failure_hint(rule: str | None, source: str, settings: Settings) -> str:
    """One or two sentences naming the rule, the field, its source column and the fix."""
    if not rule:
        return ""
    rules = {r.name: r for r in suite_rules(source, settings)}
    field = rules[rule].field if rule in rules else None
    column = settings.sources[source].columns.get(field) if field else None
    hint = f"Most failures break rule '{rule}'"
    if field:
        hint += f" on field '{field}'" + (f" (source column '{column}')" if column else "")
    hint += ". "
    if rule == "currency_convertible":
        hint += (
            "Amounts come in several currencies: set [currency] base and "
            "[currency.rates] so they can be converted. "
        )
    if rule.endswith("_not_before_earliest_date"):
        hint += (
            "If such old dates are real, set [validation].earliest_date "
            f"(now {settings.validation.earliest_date}). "
        )
    return hint
