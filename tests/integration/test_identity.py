"""One record per real customer: clustering, and matching scored against the generator's
planted duplicates."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime
from pathlib import Path

import polars as pl

from pipelines.config import load_settings
from pipelines.core.identity import cluster_pairs
from pipelines.load import ingest
from pipelines.load.clean import build_staging, normalise_phone
from pipelines.warehouse import connect_warehouse
from tests.helpers import assert_reconciled, run_to_core

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def test_cluster_pairs_joins_chains_and_names_the_smallest_id():
    clusters = cluster_pairs([("b", "c", "email"), ("a", "b", "phone_name"), ("x", "y", "email")])
    assert clusters == [
        ("a", "a", "phone_name"),
        ("b", "a", "phone_name"),
        ("c", "a", "email"),
        ("x", "x", "email"),
        ("y", "x", "email"),
    ]


def test_cluster_pairs_of_nothing_is_nothing():
    assert cluster_pairs([]) == []


def _pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for ids in groups.values() for p in itertools.combinations(ids, 2)}


def _sample_config(tmp_path: Path) -> Path:
    config = (SAMPLE / "crm.toml").read_text(encoding="utf-8")
    config = (
        config.replace('path = "', f'path = "{SAMPLE}/')
        .replace(f'path = "{SAMPLE}/../warehouse/crm.duckdb"', 'path = "wh/crm.duckdb"')
        .replace(
            f'serving_path = "{SAMPLE}/../serving/crm.duckdb"',
            'serving_path = "serving/crm.duckdb"',
        )
    )
    cfg = tmp_path / "crm.toml"
    cfg.write_text(config, encoding="utf-8")
    return cfg


def test_planted_duplicates_are_found_with_high_precision_and_recall(tmp_path):
    con = run_to_core(_sample_config(tmp_path))
    assert_reconciled(con)
    found = con.sql("select source_customer_id, customer_id from core.customer_map").pl()
    truth = pl.read_csv(
        SAMPLE / "truth" / "duplicates.csv",
        schema_overrides={"customer_id": pl.String, "person_id": pl.String},
    )
    known = set(truth["customer_id"])
    found = found.filter(pl.col("source_customer_id").is_in(known))
    predicted = _pairs(
        {
            k: v
            for k, v in found.group_by("customer_id").agg(pl.col("source_customer_id")).iter_rows()
        }
    )
    actual = _pairs(
        {k: v for k, v in truth.group_by("person_id").agg(pl.col("customer_id")).iter_rows()}
    )
    assert len(actual) >= 30, "the sample must plant duplicates to score against"
    true_positives = len(predicted & actual)
    precision = true_positives / len(predicted)
    recall = true_positives / len(actual)
    assert precision >= 0.99, (precision, sorted(predicted - actual)[:5])
    assert recall >= 0.95, (recall, sorted(actual - predicted)[:5])


def test_phone_numbers_normalise_to_e164():
    examples = [
        ("(030) 1234567", "DE", "+49301234567"),
        ("0041 79 701 40 56", "CH", "+41797014056"),
        ("415-677-3664", "US", "+14156773664"),
        ("+31 20 8786284", None, "+31208786284"),
        ("06.77.47.07.63", "FR", "+33677470763"),
        ("123", "US", None),
        ("call me", "US", None),
        (None, "DE", None),
    ]
    assert [normalise_phone(t, c) for t, c, _ in examples] == [e for _, _, e in examples]


def test_each_customer_row_gets_the_e164_form_of_its_own_phone_and_parses_it_once(tmp_path):
    """Phones are parsed once per distinct (text, country) and joined back to the rows;
    a second build parses nothing again."""
    settings = load_settings(_sample_config(tmp_path))
    con = connect_warehouse(settings)
    for source in settings.sources.values():
        ingest.ingest_source(con, source, "run-1", datetime.now())
    build_staging(con, settings)
    rows = con.execute(
        "select phone_text, country, phone from staging.customers where phone_text is not null"
    ).fetchall()
    assert len(rows) > 1000
    assert sum(p is not None for _, _, p in rows) > 0.9 * len(rows)
    assert [p for _, _, p in rows] == [normalise_phone(t, c) for t, c, _ in rows]
    # staging everything again parses no pair again (the lookup gains no row)
    lookup = con.execute("select count(*) from raw.phone_numbers").fetchall()
    build_staging(con, settings, full_refresh=True)
    assert con.execute("select count(*) from raw.phone_numbers").fetchall() == lookup
    again = con.execute(
        "select phone_text, country, phone from staging.customers where phone_text is not null"
    ).fetchall()
    assert Counter(again) == Counter(rows)
