"""One record per real customer: match records, cluster them, pick a survivor.

The match rules are SQL (``sql/core/identity_edges.sql``); clustering is a union-find
over the matched pairs, which are few (a few per cent of customers), so Python is fast
enough and far simpler than iterating connected components in SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import duckdb
import pyarrow as pa

from pipelines.sqlrun import ensure_macros, run_sql

# An e-mail or phone shared by more ids than this is a placeholder, not a person.
MAX_IDS_PER_CONTACT = 5


@dataclass(frozen=True)
class IdentityReport:
    source_ids: int
    customers: int
    ids_merged: int
    matches_by_rule: dict[str, int]


def cluster_pairs(pairs: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Connected components of matched pairs.

    ``pairs`` holds (customer_id_a, customer_id_b, match_rule). Returns one
    (customer_id, cluster_id, match_rule) per id that is in any pair; ``cluster_id`` is
    the smallest id of its component, ``match_rule`` the rule of the first pair (in
    sorted order) that linked the id.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    rule_of: dict[str, str] = {}
    for a, b, rule in sorted(pairs):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
        rule_of.setdefault(a, rule)
        rule_of.setdefault(b, rule)
    return [(x, find(x), rule_of[x]) for x in sorted(parent)]


def _clusters_table(pairs: list[tuple[str, str, str]]) -> pa.Table:
    """:func:`cluster_pairs` of ``pairs`` as an Arrow table (customer_id, cluster_id,
    match_rule), for DuckDB to read."""
    clusters = cluster_pairs(pairs)
    return pa.table(
        {
            "customer_id": pa.array([c[0] for c in clusters], pa.string()),
            "cluster_id": pa.array([c[1] for c in clusters], pa.string()),
            "match_rule": pa.array([c[2] for c in clusters], pa.string()),
        }
    )


def resolve_identities(con: duckdb.DuckDBPyConnection) -> IdentityReport:
    """Build ``core.customer_records``, ``core.identity_edges``, ``core.customer_map``.

    Requires the validated ``staging.*`` tables and ``quarantine.*``.
    """
    run_sql(con, "core/customer_records")
    run_sql(con, "core/identity_edges", {"max_shared": MAX_IDS_PER_CONTACT})
    pairs = con.execute(
        "select customer_id_a, customer_id_b, match_rule from core.identity_edges"
    ).fetchall()
    con.register("_clusters", _clusters_table(pairs))
    con.execute("create or replace table core.identity_clusters as select * from _clusters")
    con.unregister("_clusters")
    run_sql(con, "core/customer_map")
    source_ids, customers, merged = con.execute("""
        select count(*), count(distinct customer_id),
               count(*) filter (where match_rule <> 'self')
        from core.customer_map""").fetchall()[0]
    by_rule = dict(
        con.execute(
            "select match_rule, count(*) from core.customer_map "
            "where match_rule <> 'self' group by all"
        ).fetchall()
    )
    return IdentityReport(source_ids, customers, merged, by_rule)


@contextmanager
def identity_as_known_at(con: duckdb.DuckDBPyConnection, known_at: date) -> Iterator[None]:
    """Within the block, ``core.transactions``, ``core.events``, ``core.customer_records``
    and ``core.customer_map`` are the warehouse's as far as they were known on
    ``known_at``: rows dated after it left out, and every row re-keyed to its customer as
    the customer records known then identify them (records known later, which can merge
    two customers into one, are not used).

    SQL that names those tables without a database (the churn features and labels, the
    CLV summary) reads them so. The tables are views in an in-memory database made the
    default for the block; nothing in the warehouse changes. The churn step trains in
    here, so a merge found after its training date leaves its training data as they were.
    """
    warehouse = (
        '"' + con.execute("select current_database()").fetchall()[0][0].replace('"', '""') + '"'
    )
    query = "select customer_id_a, customer_id_b, match_rule from identity_edges_at($k, $m)"
    ensure_macros(con, query)
    pairs = con.execute(query, {"k": known_at, "m": MAX_IDS_PER_CONTACT}).fetchall()
    con.register("identity_clusters_known_at", _clusters_table(pairs))
    run_sql(con, "models/customer_map_known_at", {"known_at": known_at})
    con.unregister("identity_clusters_known_at")
    known = "known_at"
    con.execute(f"attach ':memory:' as {known}")
    try:
        con.execute(f"create schema {known}.core")
        con.execute(
            f"create table {known}.core.customer_map as select * from customer_map_known_at"
        )
        day = f"date '{known_at.isoformat()}'"
        for table, dated, key in (
            ("transactions", "order_date", "source_customer_id"),
            ("events", "event_at::date", "source_customer_id"),
        ):
            con.execute(f"""
                create view {known}.core.{table} as
                select m.customer_id, t.* exclude (customer_id)
                from {warehouse}.core.{table} t
                join {known}.core.customer_map m on m.source_customer_id = t.{key}
                where t.{dated} <= {day}""")
        con.execute(f"""
            create view {known}.core.customer_records as
            select * from {warehouse}.core.customer_records
            where coalesce(updated_at, signup_at) is null
               or cast(coalesce(updated_at, signup_at) as date) <= {day}""")
        con.execute(f"use {known}")
        yield
    finally:
        con.execute(f"use {warehouse}")
        con.execute(f"detach {known}")
        con.execute("drop table if exists temp.main.customer_map_known_at")
