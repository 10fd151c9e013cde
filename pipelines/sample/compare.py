"""Are two warehouses' published outputs the same? (daily runs against a full refresh)

:func:`compare_published` compares what two configs' last runs published: every table
of the serving database (``marts.*``) and the export files of the latest
``<exports.path>/<as_of>/`` directory. What legitimately differs between two runs of the
same inputs is ignored: run ids (columns named in :data:`IGNORED_COLUMNS`, and the
manifest's run keys) and, in the history marts, the rows of earlier runs: daily runs keep
one set of rows per run, a full refresh has only its own, so each side's rows are those
of its latest run.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb

from pipelines.config import load_settings

# Run-time identifiers, not data. No mart has a publish or build timestamp today (the
# column lists are in sql/marts/*.toml); those two names are kept out too, so that adding
# one does not make every comparison fail.
IGNORED_COLUMNS = frozenset({"run_id", "published_at", "generated_at"})
# manifest.json keys that name the run that wrote or amended the directory
IGNORED_MANIFEST_KEYS = frozenset({"run_id", "amended_by_erasure", "published_at", "generated_at"})
SERVING_SCHEMA = "marts"
# The one mart that records how the deliveries came in, not what they hold: the customer
# ids that changed since the last published run. A full refresh from scratch has no
# earlier run, so it has none to report (sql/marts/customer_id_changes.toml).
PATH_DEPENDENT_TABLES = frozenset({"customer_id_changes"})
MANIFEST_NAME = "manifest.json"
_AS_OF_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# rows quoted in a difference, per side
_EXAMPLES = 2


def compare_published(config_a: str | Path, config_b: str | Path) -> list[str]:
    """Differences between what the runs of two configs published; empty when equal.

    Parameters
    ----------
    config_a, config_b : paths of two ``crm.toml``; their ``warehouse.serving_path`` and
        ``exports.path`` are compared.

    Serving databases: the same tables in ``marts``, the same columns, and the
    same rows as a multiset (``EXCEPT ALL`` both ways), leaving out the columns in
    :data:`IGNORED_COLUMNS`; a table with a ``run_id`` column is compared on the rows of
    its database's latest run (the greatest run id: run ids start with the run's start
    time). Exports: the latest ``<as_of>/`` directory of each side must have the same
    name and files; CSV and Parquet files the same columns and rows (ignored columns left
    out), ``manifest.json`` the same content less :data:`IGNORED_MANIFEST_KEYS`. The
    tables of :data:`PATH_DEPENDENT_TABLES` are only checked to exist on both sides.

    Returns
    -------
    One line per difference, naming the table or file, e.g.
    ``"marts.customer_360: 3 rows only in A, 3 only in B (of 200 and 200) ..."``.
    """
    a, b = load_settings(config_a), load_settings(config_b)
    return compare_serving(a.warehouse.serving_path, b.warehouse.serving_path) + compare_exports(
        a.exports.path, b.exports.path
    )


# --- serving database ---------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def compare_serving(path_a: Path, path_b: Path) -> list[str]:
    """Differences between the ``marts`` schemas of two serving databases (see
    :func:`compare_published`); both are opened read-only."""
    missing = [f"serving database {p} does not exist" for p in (path_a, path_b) if not p.is_file()]
    if missing:
        return missing
    con = duckdb.connect()
    try:
        con.execute(f"attach '{_quote(path_a)}' as side_a (read_only)")
        con.execute(f"attach '{_quote(path_b)}' as side_b (read_only)")
        tables = {side: _marts_tables(con, side) for side in ("side_a", "side_b")}
        latest = {side: _latest_run(con, side, tables[side]) for side in tables}
        diffs = []
        names_a, names_b = set(tables["side_a"]), set(tables["side_b"])
        for name in sorted(names_a - names_b):
            diffs.append(f"{SERVING_SCHEMA}.{name}: only in A")
        for name in sorted(names_b - names_a):
            diffs.append(f"{SERVING_SCHEMA}.{name}: only in B")
        for name in sorted((names_a & names_b) - PATH_DEPENDENT_TABLES):
            diffs += _compare_table(
                con, name, tables["side_a"][name], tables["side_b"][name], latest
            )
        return diffs
    finally:
        con.close()


def _quote(path: Path) -> str:
    return str(path).replace("'", "''")


def _marts_tables(con: duckdb.DuckDBPyConnection, side: str) -> dict[str, list[str]]:
    """Tables of ``marts`` in ``side`` -> their columns, in order. (Views are left out: the
    serving database has none, and a view's SQL names ``marts.*`` of the default catalog.)"""
    rows = con.execute(
        "select c.table_name, list(c.column_name order by c.column_index) "
        "from duckdb_columns() c join duckdb_tables() t using (database_name, schema_name, "
        "table_name) where c.database_name = ? and c.schema_name = ? group by c.table_name",
        [side, SERVING_SCHEMA],
    ).fetchall()
    return {name: list(columns) for name, columns in rows}


def _latest_run(
    con: duckdb.DuckDBPyConnection, side: str, tables: dict[str, list[str]]
) -> str | None:
    """The greatest run id in any table of ``side`` (None without run ids)."""
    runs = []
    for name, columns in tables.items():
        if "run_id" in columns:
            sql = f"select max(run_id) from {side}.{SERVING_SCHEMA}.{_ident(name)}"
            runs += [r[0] for r in con.execute(sql).fetchall() if r[0] is not None]
    return max(runs) if runs else None


def _compare_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns_a: list[str],
    columns_b: list[str],
    latest: dict[str, Any],
) -> list[str]:
    label = f"{SERVING_SCHEMA}.{name}"
    diffs = []
    kept_a = [c for c in columns_a if c not in IGNORED_COLUMNS]
    kept_b = [c for c in columns_b if c not in IGNORED_COLUMNS]
    if kept_a != kept_b:
        diffs.append(
            f"{label}: columns differ: only in A {sorted(set(kept_a) - set(kept_b))}, "
            f"only in B {sorted(set(kept_b) - set(kept_a))}"
            + ("" if set(kept_a) != set(kept_b) else " (same columns, other order)")
        )
    common = [c for c in kept_a if c in kept_b]
    if not common:
        return diffs
    select_list = ", ".join(_ident(c) for c in common)

    def rows_of(side: str, has_run: bool) -> tuple[str, list]:
        sql = f"select {select_list} from {side}.{SERVING_SCHEMA}.{_ident(name)}"
        if has_run and latest[side] is not None:
            return sql + " where run_id = ?", [latest[side]]
        return sql, []

    sql_a, params_a = rows_of("side_a", "run_id" in columns_a)
    sql_b, params_b = rows_of("side_b", "run_id" in columns_b)
    n_a = con.execute(f"select count(*) from ({sql_a})", params_a).fetchall()[0][0]
    n_b = con.execute(f"select count(*) from ({sql_b})", params_b).fetchall()[0][0]
    only = {}
    for side, first, second in (("A", sql_a, sql_b), ("B", sql_b, sql_a)):
        params = params_a + params_b if side == "A" else params_b + params_a
        surplus = f"({first}) except all ({second})"
        count = con.execute(f"select count(*) from ({surplus})", params).fetchall()[0][0]
        only[side] = (count, con.execute(f"{surplus} limit {_EXAMPLES}", params).fetchall())
    if only["A"][0] or only["B"][0]:
        diffs.append(
            f"{label}: {only['A'][0]} rows only in A, {only['B'][0]} only in B "
            f"(of {n_a} and {n_b})"
            + _examples(common, only["A"][1], "A")
            + _examples(common, only["B"][1], "B")
        )
    return diffs


def _examples(columns: list[str], rows: list, side: str) -> str:
    if not rows:
        return ""
    shown = [str(dict(zip(columns, r)))[:300] for r in rows[:_EXAMPLES]]
    return f"; e.g. {side}: " + " | ".join(shown)


# --- export files -------------------------------------------------------------------------


def compare_exports(root_a: Path, root_b: Path) -> list[str]:
    """Differences between the latest ``<as_of>/`` export directories under two roots
    (see :func:`compare_published`)."""
    latest = {side: _latest_export_dir(root) for side, root in (("A", root_a), ("B", root_b))}
    if latest["A"] is None and latest["B"] is None:
        return []
    for side, other in (("A", "B"), ("B", "A")):
        if latest[side] is None:
            return [f"exports: no <as_of> directory in {side}, {latest[other].name} in {other}"]
    dir_a, dir_b = latest["A"], latest["B"]
    if dir_a.name != dir_b.name:
        return [f"exports: latest as_of directory {dir_a.name} in A, {dir_b.name} in B"]
    label = f"exports/{dir_a.name}"
    files_a = {p.name for p in dir_a.iterdir() if p.is_file()}
    files_b = {p.name for p in dir_b.iterdir() if p.is_file()}
    diffs = [f"{label}/{n}: only in A" for n in sorted(files_a - files_b)]
    diffs += [f"{label}/{n}: only in B" for n in sorted(files_b - files_a)]
    for file_name in sorted(files_a & files_b):
        path_a, path_b = dir_a / file_name, dir_b / file_name
        if file_name == MANIFEST_NAME:
            problem = _compare_manifests(path_a, path_b)
        elif path_a.suffix == ".csv":
            problem = _compare_rows(*(_read_csv(p) for p in (path_a, path_b)))
        elif path_a.suffix == ".parquet":
            problem = _compare_parquet(path_a, path_b)
        else:
            problem = None if path_a.read_bytes() == path_b.read_bytes() else "contents differ"
        if problem:
            diffs.append(f"{label}/{file_name}: {problem}")
    return diffs


def _latest_export_dir(root: Path) -> Path | None:
    if not root.is_dir():
        return None
    dirs = [p for p in root.iterdir() if p.is_dir() and _AS_OF_DIR.match(p.name)]
    return max(dirs, key=lambda p: p.name) if dirs else None


def _read_csv(path: Path) -> tuple[list[str], list[tuple]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        return header, [tuple(r) for r in reader]


def _compare_parquet(path_a: Path, path_b: Path) -> str | None:
    import pyarrow.parquet as pq

    table_a, table_b = pq.read_table(path_a), pq.read_table(path_b)
    # the types are part of the file: the same values under another type are a difference
    types_a, types_b = (
        {f.name: str(f.type) for f in t.schema if f.name not in IGNORED_COLUMNS}
        for t in (table_a, table_b)
    )
    if types_a != types_b:
        return f"column types differ: {types_a} in A, {types_b} in B"
    return _compare_rows(
        *(
            (t.column_names, list(zip(*(c.to_pylist() for c in t.columns))))
            for t in (table_a, table_b)
        )
    )


def _compare_rows(a: tuple[list[str], list[tuple]], b: tuple[list[str], list[tuple]]) -> str | None:
    """Header and rows (as a multiset) of two files, ignored columns left out."""
    (header_a, rows_a), (header_b, rows_b) = a, b

    def keep(header: list[str], rows: list[tuple]) -> tuple[list[str], Counter]:
        idx = [i for i, h in enumerate(header) if h not in IGNORED_COLUMNS]
        return [header[i] for i in idx], Counter(tuple(r[i] for i in idx) for r in rows)

    (cols_a, count_a), (cols_b, count_b) = keep(header_a, rows_a), keep(header_b, rows_b)
    if cols_a != cols_b:
        return f"columns differ: {cols_a} in A, {cols_b} in B"
    only_a, only_b = count_a - count_b, count_b - count_a
    if only_a or only_b:
        return (
            f"{sum(only_a.values())} rows only in A, {sum(only_b.values())} only in B "
            f"(of {len(rows_a)} and {len(rows_b)})"
            + _examples(cols_a, list(only_a), "A")
            + _examples(cols_b, list(only_b), "B")
        )
    return None


def _compare_manifests(path_a: Path, path_b: Path) -> str | None:
    a, b = (
        _comparable_manifest(json.loads(p.read_text(encoding="utf-8"))) for p in (path_a, path_b)
    )
    if a == b:
        return None
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    detail = []
    if "files" in keys:
        files_a = {f.get("name"): f for f in a.get("files", [])}
        files_b = {f.get("name"): f for f in b.get("files", [])}
        changed = sorted(
            str(n) for n in set(files_a) | set(files_b) if files_a.get(n) != files_b.get(n)
        )
        detail.append(f"file entries differ: {', '.join(changed) or 'their order'}")
    return f"differs in {', '.join(keys)}" + (f" ({'; '.join(detail)})" if detail else "")


def _comparable_manifest(manifest: dict) -> dict:
    out = {k: v for k, v in manifest.items() if k not in IGNORED_MANIFEST_KEYS}
    files = []
    for entry in out.get("files", []):
        entry = dict(entry)
        # a file with a run id column has another checksum for the same data
        if IGNORED_COLUMNS & set(entry.get("columns", [])):
            entry.pop("sha256", None)
        files.append(entry)
    if "files" in out:
        out["files"] = files
    return out
