"""One record per real customer: match records, cluster them, pick a survivor.

The match rules are SQL (``sql/core/identity_edges.sql``); clustering is a union-find
over the matched pairs, which are few (a few per cent of customers), so Python is fast
enough and far simpler than iterating connected components in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipelines.sqlrun import run_sql

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


def resolve_identities(con: duckdb.DuckDBPyConnection) -> IdentityReport:
    """Build ``core.customer_records``, ``core.identity_edges``, ``core.customer_map``.

    Requires the validated ``staging.*`` tables and ``quarantine.*``.
    """
    run_sql(con, "core/customer_records")
    run_sql(con, "core/identity_edges", {"max_shared": MAX_IDS_PER_CONTACT})
    pairs = con.execute(
        "select customer_id_a, customer_id_b, match_rule from core.identity_edges"
    ).fetchall()
    clusters = cluster_pairs(pairs)
    table = pa.table(
        {
            "customer_id": pa.array([c[0] for c in clusters], pa.string()),
            "cluster_id": pa.array([c[1] for c in clusters], pa.string()),
            "match_rule": pa.array([c[2] for c in clusters], pa.string()),
        }
    )
    con.register("_clusters", table)
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
