"""Write a suite's verdicts, and stop a run whose files are mostly bad.

``_apply_failures`` writes ``quarantine.<source>`` (one row per failing row: the rules
it broke, its original values) and ``quarantine.field_issues`` (the original value of
each blanked field), and blanks those fields in ``staging.<source>``.
``check_batch_limits`` raises, with a hint naming the rule and its fix, when a file's
share of failing rows is over the limit or no transaction row is usable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb

from pipelines.config import Settings
from pipelines.errors import InputError
from pipelines.load.processing import PENDING_TABLE, SourceFiles
from pipelines.load.rules import Rule, suite_rules
from pipelines.sqlrun import ensure_bookkeeping_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationReport:
    """One source's validation this run: the rows checked (those of ``files.pending``),
    quarantined and blanked, failures per rule, and ``per_file``: sha256 ->
    {"rows", "quarantined", "blanked"} for the files checked."""

    source: str
    rows_checked: int
    rows_quarantined: int
    fields_blanked: int
    failures_by_rule: dict[str, int]
    files: SourceFiles
    per_file: dict[str, dict[str, int]] = field(default_factory=dict)


class FileOverLimitError(InputError):
    """A file's share of failing rows is over ``max_failed_share`` (``file_sha256`` None
    when no usable transaction row is left at all)."""

    def __init__(self, message: str, source: str, file_sha256: str | None):
        super().__init__(message)
        self.source = source
        self.file_sha256 = file_sha256


def _apply_failures(
    con,
    files: SourceFiles,
    rows_checked: int,
    failing: dict[str, list[tuple[str, int]]],
    rules: dict[str, Rule],
    run_id: str,
) -> ValidationReport:
    """Write the suite's verdicts on the pending files of ``files``: ``failing`` maps a
    rule to the (file sha256, row number) keys of the rows that broke it. Verdicts an
    earlier run wrote for those files were removed by the clean step."""
    import pyarrow as pa

    source = files.source

    row_fail: dict[tuple[str, int], list[str]] = {}
    field_fail: list[tuple[str, int, str, str]] = []
    for name, keys in failing.items():
        rule = rules[name]
        for key in keys:
            if rule.severity == "row":
                row_fail.setdefault(key, []).append(name)
            else:
                field_fail.append((key[0], key[1], name, rule.column))
    ensure_quarantine_table(con, source)
    pending = f"(select file_sha256 from {PENDING_TABLE})"
    con.execute(f"delete from quarantine.{source} where _file_sha256 in {pending}")
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
    con.execute(
        f"delete from quarantine.field_issues where source = ? and _file_sha256 in {pending}",
        [source],
    )
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
    per_file: dict[str, dict[str, int]] = {}
    for sha, n in con.execute(
        f"select _file_sha256, count(*) from staging.{source} "
        f"where _file_sha256 in {pending} group by all"
    ).fetchall():
        per_file[sha] = {"rows": n, "quarantined": 0, "blanked": 0}
    for sha, _ in row_fail:
        per_file[sha]["quarantined"] += 1
    for sha, *_ in field_fail:
        per_file[sha]["blanked"] += 1
    report = ValidationReport(
        source, rows_checked, len(row_fail), len(field_fail), counts, files, per_file
    )
    log.info(
        "validate %s: %d rows, %d quarantined, %d fields blanked",
        source,
        rows_checked,
        len(row_fail),
        len(field_fail),
    )
    return report


def ensure_quarantine_table(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Create ``quarantine.<source>`` (the raw columns, the run id and the rules broken)."""
    con.execute("create schema if not exists quarantine")
    con.execute(f"""
        create table if not exists quarantine.{source} as
        select null::varchar as run_id, null::varchar as rules, r.*
        from raw.{source} r limit 0""")


def _original_column(source: str, column: str) -> str:
    """The raw (as delivered) column behind a staged column."""
    originals = {"signup_at": "signup_ts", "phone": "phone"}
    return originals.get(column, column)


def check_batch_limits(
    con: duckdb.DuckDBPyConnection, settings: Settings, checked: Iterable[tuple[str, str]]
) -> None:
    """Stop the run when a file is mostly bad or there are no usable transactions.

    The share counts rows the reader rejected plus rows the suite quarantined, over the
    rows read, per file in ``checked`` ((source, file sha256) pairs: the files validated
    this run). Raises :class:`FileOverLimitError`.
    """
    limit = settings.validation.max_failed_share
    import pyarrow as pa

    checked = sorted(set(checked))
    con.register(
        "_checked_files",
        pa.table(
            {
                "source": pa.array([c[0] for c in checked], pa.string()),
                "file_sha256": pa.array([c[1] for c in checked], pa.string()),
            }
        ),
    )
    # Failing rows are matched to their file by source and sha256: one file can feed
    # several sources (raw.files has a row per source).
    rows = con.execute(
        """
        with files as (
            select file_sha256, source, file_path, rows_read
            from raw.files join _checked_files using (source, file_sha256)
            where rows_read > 0
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
        select f.source, f.file_sha256, f.file_path, f.rows_read,
               count(q._file_sha256) as failed,
               any_value(t.rule) as top_rule,
               count(q._file_sha256) filter (where q.rules like 'reader: %') as unreadable
        from files f
        left join quarantined q on q.source = f.source and q._file_sha256 = f.file_sha256
        left join top_rule t on t.source = f.source and t._file_sha256 = f.file_sha256
        group by all
        having count(q._file_sha256) > $limit * f.rows_read
        order by f.file_path, f.source""",
        {"limit": limit},
    ).fetchall()
    con.unregister("_checked_files")
    if rows:
        source, sha, path, read, failed, rule, unreadable = rows[0]
        if unreadable * 2 > failed:
            # Mostly records the reader could not split: the file's format, not its values.
            raise FileOverLimitError(
                f"File {path} (source '{source}'): {failed} of {read} rows "
                f"({failed / read:.0%}) failed, more than the allowed {limit:.0%}; "
                f"{unreadable} of them could not be read as records (most often: "
                f"{rule.removeprefix('reader: ')}). Check the delimiter, quote and "
                f"encoding options in [sources.{source}] and that the file is not "
                "truncated, or raise [validation].max_failed_share. The unreadable lines "
                "are listed, with their line numbers, in raw.rejected_rows of the working "
                "database.",
                source,
                sha,
            )
        hint = _failure_hint(rule, source, settings)
        raise FileOverLimitError(
            f"File {path} (source '{source}'): {failed} of {read} rows "
            f"({failed / read:.0%}) failed validation, more than the allowed "
            f"{limit:.0%}. {hint}Check the column mapping and the timestamp_format, "
            "delimiter, encoding and decimal_comma options in [sources." + source + "], "
            "or raise [validation].max_failed_share. Failing rows are listed in "
            f"quarantine.{source} of the working database.",
            source,
            sha,
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
