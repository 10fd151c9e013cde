"""Country values to ISO 3166-1 alpha-2 (pipelines/load/countries.py)."""

from __future__ import annotations

import duckdb
import pytest

from pipelines.load.countries import country_code, normalise_countries


@pytest.mark.parametrize(
    "text, code",
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        (" deutschland ", "DE"),
        ("Österreich", "AT"),
        ("Schweiz", "CH"),
        ("España", "ES"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("Holland", "NL"),
        ("United States", "US"),
        ("USA", "US"),
        ("Côte d'Ivoire", "CI"),
        ("Atlantis", None),
        ("", None),
        (None, None),
    ],
)
def test_country_code(text, code):
    assert country_code(text) == code


def test_normalise_countries_maps_each_known_value_and_keeps_the_rest():
    con = duckdb.connect()
    try:
        con.execute(
            "create temp table staged_customers as select * from (values "
            "('1', 'GERMANY'), ('2', 'DE'), ('3', 'FRA'), ('4', 'ATLANTIS'), ('5', null)) "
            "t(customer_id, country)"
        )
        assert normalise_countries(con) == 2  # GERMANY and FRA; DE is already a code
        assert con.execute(
            "select customer_id, country from staged_customers order by 1"
        ).fetchall() == [("1", "DE"), ("2", "DE"), ("3", "FR"), ("4", "ATLANTIS"), ("5", None)]
    finally:
        con.close()
