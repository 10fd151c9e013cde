"""Build the published tables (``marts.*``) from ``core.*`` and ``models.*``.

``marts.customer_360`` holds the current run only. The other marts are history tables:
every published run's rows are kept so dashboards can trend (a run that failed or was
killed after this step leaves none: the next run drops them), and a rerun with the same
run_id replaces its own rows. ``sql/marts/<table>.sql`` builds one run's rows in the temporary
table ``temp.main.<table>_run``; they are checked here, then swapped into
``marts.<table>`` in one transaction, so a failed check leaves the history untouched.

Monthly KPIs (``marts.kpi_monthly``; docs/kpis.md has the reasoning). A(m) = customers
with a completed order in UTC month m, counting only data on or before as_of:

- new: first completed order ever in m; returning: in A(m), not new;
- repeat_purchase_rate: share of A(m) with >= 2 completed orders in m;
- retention_rate: |A(m-1) and A(m)| / |A(m-1)|; churn_rate: 1 - retention_rate (both NULL
  when A(m-1) is empty);
- revenue: gross sum of completed order amounts; average_order_value: revenue / orders;
- average_predicted_clv: mean customer_360.predicted_clv, on the as-of month row only;
- nps: % promoters (9-10) - % detractors (0-6) of NPS responses, in percentage points;
- csat: share of CSAT responses scoring 4 or 5 (0-1);
- complaint_rate: complaint events per completed order (can exceed 1);
- median_first_response_hours: median value of support_ticket events;
- is_partial_month: the as-of month when as_of is not its last day.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tomllib
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import duckdb

from pipelines.errors import StepError
from pipelines.sqlrun import SQL_DIR, ensure_bookkeeping_tables, run_sql

log = logging.getLogger(__name__)

# The readable DAG: customer_360 first (segment_summary and kpi_monthly read it), then
# the history tables. Every name here is also the table's SQL file, its contract file and
# its mart.
MARTS_ORDER = (
    "customer_360",
    "segment_summary",
    "kpi_monthly",
    "data_quality",
    "model_parameters",
    "model_metrics",
    "customer_id_changes",
)
HISTORY_TABLES = MARTS_ORDER[1:]

# sql/marts/<table>.toml: the contract of marts.<table> (see MartContract).
CONTRACT_DIR = SQL_DIR / "marts"

_CONTRACT_KEYS = {"description", "grain", "notes", "invariants", "columns"}
_PLACEHOLDER = re.compile(r"<(\w+)>")


@dataclass(frozen=True)
class MartContract:
    """One mart's contract, as written in ``sql/marts/<table>.toml``.

    ``grain``: the key columns (for a history table, one row per run_id and these);
    ``invariants``: (what is wrong, SQL condition true for a bad row) pairs, NULLs pass;
    ``columns``: (column, description) in table order. A column written with ``<name>``
    in it (``expected_purchases_<days>d``) stands for every column with digits there, and
    ``{name}`` in its description for their value: such columns depend on the config.
    ``notes``: prose for docs/marts.md only.
    """

    table: str
    description: str
    grain: tuple[str, ...]
    invariants: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]
    notes: str = ""

    def describe(self, column: str) -> str | None:
        """The description of ``column``, or None when the contract has none."""
        for name, text in self.columns:
            if name == column:
                return text
        for name, text in self.columns:
            match = _column_pattern(name).fullmatch(column) if _PLACEHOLDER.search(name) else None
            if match:
                return text.format(**{k: int(v) for k, v in match.groupdict().items()})
        return None

    def named_columns(self) -> tuple[str, ...]:
        """The columns the contract names exactly (not by a pattern)."""
        return tuple(name for name, _ in self.columns if not _PLACEHOLDER.search(name))


@cache
def _column_pattern(name: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(name)  # literal, placeholder, literal, ...
    return re.compile(
        "".join(
            re.escape(part) if i % 2 == 0 else rf"(?P<{part}>\d+)" for i, part in enumerate(parts)
        )
    )


@cache
def load_contract(path: Path) -> MartContract:
    """Read and check one contract file; raises ValueError naming the file and the key."""
    with path.open("rb") as file:
        data = tomllib.load(file)

    def fail(problem: str) -> ValueError:
        return ValueError(f"{path}: {problem}")

    unknown = set(data) - _CONTRACT_KEYS
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}; known: {sorted(_CONTRACT_KEYS)}")
    description, grain = data.get("description"), data.get("grain")
    if not isinstance(description, str) or not description:
        raise fail("description must be a non-empty string")
    if not isinstance(grain, list) or not grain or not all(isinstance(c, str) and c for c in grain):
        raise fail("grain must be a non-empty list of column names")
    invariants = []
    for i, entry in enumerate(data.get("invariants", [])):
        if (
            not isinstance(entry, dict)
            or set(entry) != {"problem", "bad_row"}
            or not all(isinstance(v, str) and v for v in entry.values())
        ):
            raise fail(f"invariants[{i}] must have exactly a problem and a bad_row (strings)")
        invariants.append((entry["problem"], entry["bad_row"]))
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise fail("[columns] must map every column to its description")
    for column, text in columns.items():
        if not isinstance(text, str) or not text:
            raise fail(f"column {column} needs a non-empty description")
        placeholders = _PLACEHOLDER.findall(column)
        try:
            text.format(**{name: 0 for name in placeholders}) if placeholders else None
        except (KeyError, IndexError, ValueError) as exc:
            raise fail(
                f"the description of column {column} may only use "
                f"{{{'}, {'.join(placeholders)}}}: {exc!r}"
            ) from None
    notes = data.get("notes", "")
    if not isinstance(notes, str):
        raise fail("notes must be a string")
    return MartContract(
        table=path.stem,
        description=description,
        grain=tuple(grain),
        invariants=tuple(invariants),
        columns=tuple(columns.items()),
        notes=notes.strip(),
    )


def contract(table: str) -> MartContract:
    """The contract of ``marts.<table>`` (``sql/marts/<table>.toml``, read once)."""
    if table not in MARTS_ORDER:
        raise ValueError(f"{table!r} is not a mart; known: {MARTS_ORDER}")
    return load_contract(CONTRACT_DIR / f"{table}.toml")


# Read from the contract files. customer_360: one row per customer_id; a history table:
# one row per run_id and these columns.
GRAINS = {table: contract(table).grain for table in MARTS_ORDER}

# (what is wrong, condition true for a bad row) per history table; NULLs pass.
INVARIANTS = {
    table: contract(table).invariants for table in HISTORY_TABLES if contract(table).invariants
}


def build_customer_360(
    con: duckdb.DuckDBPyConnection, as_of: date, run_id: str, clv_resolution: str
) -> int:
    """``marts.customer_360``: one row per customer known at ``as_of``, with the BG/NBD
    summary of ``clv_resolution`` (the one the value step fitted); returns its rows."""
    run_sql(
        con, "marts/customer_360", {"as_of": as_of, "run_id": run_id, "resolution": clv_resolution}
    )
    rows, distinct = con.execute(
        "select count(*), count(distinct customer_id) from marts.customer_360"
    ).fetchall()[0]
    if rows != distinct:
        raise StepError(
            f"marts.customer_360 has {rows} rows for {distinct} customers; a "
            "join fanned out. Nothing was published; please report this bug."
        )
    return rows


def build_marts(
    con: duckdb.DuckDBPyConnection, as_of: date, run_id: str, clv_resolution: str
) -> dict[str, int]:
    """Build every ``marts.*`` table in :data:`MARTS_ORDER` and document its columns.

    Needs ``core.*``, ``models.*`` (the value, churn and segment steps of this run),
    ``raw.files``, ``raw.rejected_rows``, ``quarantine.*`` and ``audit.file_reconciliation``.
    Returns rows per table: all of ``customer_360``; this run's rows of each history table.
    Raises :class:`StepError` when a table breaks an invariant (a share outside [0, 1],
    two rows for one key, a column without a description); history is then unchanged.
    """
    rows = {"customer_360": build_customer_360(con, as_of, run_id, clv_resolution)}
    for table in HISTORY_TABLES:
        rows[table] = build_history_table(con, table, as_of, run_id)
    comment_marts(con)
    log.info("marts rows: %s", rows)
    return rows


def build_history_table(
    con: duckdb.DuckDBPyConnection, table: str, as_of: date, run_id: str
) -> int:
    """Build this run's rows of history table ``marts.<table>``, check them, and replace the
    table's rows of ``run_id`` with them; returns how many rows the run has."""
    if table not in HISTORY_TABLES:
        raise ValueError(f"{table!r} is not a history table; known: {HISTORY_TABLES}")
    # audit.runs and audit.customer_id_changes, which customer_id_changes reads
    ensure_bookkeeping_tables(con)
    run_sql(con, f"marts/{table}", {"as_of": as_of, "run_id": run_id})
    check_run_rows(con, table)
    return replace_run_rows(con, table, run_id)


def check_run_rows(con: duckdb.DuckDBPyConnection, table: str) -> None:
    """Raise :class:`StepError` if this run's rows of ``marts.<table>`` (in
    ``temp.main.<table>_run``) repeat a key of the table's grain or break an invariant."""
    staged = f"temp.main.{table}_run"
    keys = ", ".join(GRAINS[table])
    repeated = con.execute(
        f"select {keys}, count(*) from {staged} group by all having count(*) > 1 limit 1"
    ).fetchall()
    if repeated:
        raise StepError(
            f"marts.{table} would have {repeated[0][-1]} rows for one "
            f"({keys}) = {repeated[0][:-1]} in one run; its inputs hold duplicates. "
            "Nothing was published; please report this bug."
        )
    for problem, condition in INVARIANTS.get(table, ()):
        bad = con.execute(f"select * from {staged} where {condition} limit 1").fetchall()
        if bad:
            columns = [c[0] for c in con.execute(f"describe {staged}").fetchall()]
            row = dict(zip(columns, bad[0]))
            key = {k: row[k] for k in GRAINS[table]}
            raise StepError(
                f"marts.{table}: {problem} at {key} ({row}). The inputs or the "
                f"definition in sql/marts/{table}.sql are wrong. Nothing was "
                "published; please report this bug."
            )
    if table == "segment_summary":
        _check_segments_cover_customers(con)


def _check_segments_cover_customers(con: duckdb.DuckDBPyConnection) -> None:
    """Each dimension must count every customer of marts.customer_360 exactly once."""
    wrong = con.execute("""
        select dimension, sum(customers), (select count(*) from marts.customer_360)
        from temp.main.segment_summary_run group by dimension
        having sum(customers) <> (select count(*) from marts.customer_360)
        limit 1""").fetchall()
    if wrong:
        dimension, counted, customers = wrong[0]
        raise StepError(
            f"marts.segment_summary counts {counted} customers under dimension "
            f"{dimension} but marts.customer_360 has {customers}. Nothing was "
            "published; please report this bug."
        )


def replace_run_rows(con: duckdb.DuckDBPyConnection, table: str, run_id: str) -> int:
    """Swap ``temp.main.<table>_run`` into history table ``marts.<table>``: delete the rows
    of ``run_id`` and of every run not in ``audit.publications`` (failed or interrupted
    after their marts step), insert the new ones, in one transaction. Creates the table on first use
    and adds columns a newer definition brings (older runs get NULL there)."""
    staged, target = f"temp.main.{table}_run", f"marts.{table}"
    ensure_bookkeeping_tables(con)  # audit.publications
    con.execute("begin transaction")
    try:
        con.execute(f"create table if not exists {target} as select * from {staged} limit 0")
        have = {c[0] for c in con.execute(f"describe {target}").fetchall()}
        for column, dtype, *_ in con.execute(f"describe {staged}").fetchall():
            if column not in have:
                con.execute(f'alter table {target} add column "{column}" {dtype}')
        # only published runs stay in history: rows of a run that failed or was killed
        # after its marts step go here, before they could reach the next serving copy
        con.execute(
            f"delete from {target} where run_id = $run_id or run_id not in "
            "(select run_id from audit.publications)",
            {"run_id": run_id},
        )
        con.execute(f"insert into {target} by name select * from {staged}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    rows = con.execute(
        f"select count(*) from {target} where run_id = $run_id", {"run_id": run_id}
    ).fetchall()[0][0]
    con.execute(f"drop table if exists {staged}")
    return rows


def comment_marts(con: duckdb.DuckDBPyConnection) -> None:
    """Describe every table of :data:`MARTS_ORDER` and its columns in DuckDB's catalog,
    from the contract files ``sql/marts/<table>.toml``.

    Raises :class:`StepError` (and comments nothing) if a column of one of them has no
    description in its contract, or a contract describes a column the table lacks.
    Run after every marts table is built: ``create or replace`` drops a table's comments.
    """
    planned, missing, stale = [], [], []
    for table in MARTS_ORDER:
        spec = contract(table)
        columns = [c[0] for c in con.execute(f"describe marts.{table}").fetchall()]
        planned.append(f"comment on table marts.{table} is {_literal(spec.description)}")
        for column in columns:
            text = spec.describe(column)
            if text is None:
                missing.append(f"marts.{table}.{column}")
            else:
                planned.append(
                    f"comment on column marts.{table}.{_ident(column)} is {_literal(text)}"
                )
        stale += [
            f"marts.{table}.{c} (sql/marts/{table}.toml)"
            for c in spec.named_columns()
            if c not in columns
        ]
    if missing:
        raise StepError(
            f"No description for {', '.join(missing)}. Every published column "
            "must be documented: add it to [columns] in sql/marts/<table>.toml, "
            "then regenerate docs/marts.md (python -m pipelines.marts --docs)."
        )
    if stale:
        raise StepError(
            f"The contract describes {', '.join(stale)}, which the table does "
            "not have: remove it from the contract or add it to the SQL."
        )
    for statement in planned:
        con.execute(statement)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


DOCS_INTRO = """\
# Published tables (schema `marts`) — contract

<!-- Generated from sql/marts/<table>.toml by
     `.venv/bin/python -m pipelines.marts --docs > docs/marts.md`: edit those files, not this
     one (tests/unit/test_marts.py checks that the two agree). -->

Built in the working database by `sql/marts/*.sql`, then published to the serving database.
`run_id` identifies the run; `as_of` is the run's observation date. Tables marked *history*
keep every run's rows (a rerun with the same run_id replaces its rows) so dashboards can trend.
Each table's contract is `sql/marts/<table>.toml` beside its SQL: its description, grain,
invariants and column descriptions. The descriptions are also stored in DuckDB's catalog, so
BI tools (DBeaver, Metabase, `duckdb_columns()`) show them next to the data. Units: amounts
in the base currency, times UTC.
"""


def _markdown_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")


def _grain_text(table: str) -> str:
    keys = ("run_id", *GRAINS[table]) if table in HISTORY_TABLES else GRAINS[table]
    return "one row per " + (
        f"`{keys[0]}`" if len(keys) == 1 else "(" + ", ".join(f"`{k}`" for k in keys) + ")"
    )


def render_docs() -> str:
    """The text of docs/marts.md, made from the contract files."""
    parts = [DOCS_INTRO, "\n| table | grain | history |\n|---|---|---|\n"]
    parts += [
        f"| marts.{t} | {_grain_text(t)} | "
        f"{'history' if t in HISTORY_TABLES else 'current run only'} |\n"
        for t in MARTS_ORDER
    ]
    for table in MARTS_ORDER:
        spec = contract(table)
        parts.append(
            f"\n## marts.{table}\n\n{spec.description}\n\n"
            f"Grain: {_grain_text(table)}. Contract `sql/marts/{table}.toml`, "
            f"built by `sql/marts/{table}.sql`.\n\n"
            "| column | description |\n|---|---|\n"
        )
        parts += [f"| `{name}` | {_markdown_cell(text)} |\n" for name, text in spec.columns]
        if spec.notes:
            parts.append(f"\n{spec.notes}\n")
        if spec.invariants:
            parts.append("\nA run stops before publishing when one of its rows is bad:\n\n")
            parts += [f"- {problem}: `{condition}`\n" for problem, condition in spec.invariants]
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.marts", description="The published tables' contracts."
    )
    parser.add_argument(
        "--docs",
        action="store_true",
        required=True,
        help="print docs/marts.md, generated from sql/marts/<table>.toml",
    )
    parser.parse_args(argv)
    sys.stdout.buffer.write(render_docs().encode("utf-8"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
