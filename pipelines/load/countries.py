"""Country values to ISO 3166-1 alpha-2 codes, with pycountry's ISO tables.

Exports write a country as "DE", "DEU", "Germany", "Deutschland" or "germany ". The
customers' ``country`` is used as the region of national phone numbers (clean.py), which
only an alpha-2 code can be, so each distinct value is mapped once per staging run:
alpha-2 and alpha-3 codes, English names (official and common), names in the languages of
:data:`NAME_LANGUAGES` (pycountry's translations) and a few everyday names ISO does not
list (:data:`ALIASES`). A value none of these knows is kept as it was delivered
(upper-cased), so nothing is lost; its phone numbers are then read only in international
format.
"""

from __future__ import annotations

import gettext
import unicodedata
from functools import cache

import duckdb
import pyarrow as pa
import pycountry

# the languages our users' exports are written in, beyond English
NAME_LANGUAGES = ("de", "fr", "es", "it", "nl", "pt", "pl", "sv", "da", "nb", "fi", "cs")
# everyday names and codes that are not ISO's (UK is reserved, not assigned, in ISO 3166)
ALIASES = {
    "UK": "GB",
    "GREAT BRITAIN": "GB",
    "BRITAIN": "GB",
    "ENGLAND": "GB",
    "SCOTLAND": "GB",
    "WALES": "GB",
    "NORTHERN IRELAND": "GB",
    "HOLLAND": "NL",
    "THE NETHERLANDS": "NL",
    "RUSSIA": "RU",
    "USA": "US",
    "U.S.A.": "US",
    "U.S.": "US",
    "AMERICA": "US",
    "UNITED STATES OF AMERICA": "US",
    "SOUTH KOREA": "KR",
    "NORTH KOREA": "KP",
    "CZECHIA": "CZ",
    "TURKEY": "TR",
    "VIETNAM": "VN",
    "IRAN": "IR",
    "SYRIA": "SY",
    "LAOS": "LA",
    "BOLIVIA": "BO",
    "VENEZUELA": "VE",
    "TANZANIA": "TZ",
    "MOLDOVA": "MD",
    "TAIWAN": "TW",
    "IVORY COAST": "CI",
}


def _key(text: str) -> str:
    """Upper case, accents kept, spaces collapsed: 'côte d'ivoire ' -> "CÔTE D'IVOIRE"."""
    return " ".join(unicodedata.normalize("NFC", text).upper().split())


@cache
def _names() -> dict[str, str]:
    names: dict[str, str] = {}
    translations = [
        gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang], fallback=True)
        for lang in NAME_LANGUAGES
    ]
    for country in pycountry.countries:
        english = [
            getattr(country, attr, None) for attr in ("name", "official_name", "common_name")
        ]
        for name in filter(None, english):
            names.setdefault(_key(name), country.alpha_2)
            for translation in translations:
                names.setdefault(_key(translation.gettext(name)), country.alpha_2)
    # the aliases win over a translation that happens to spell the same
    names.update(ALIASES)
    for country in pycountry.countries:  # and the codes over everything
        names[country.alpha_3] = country.alpha_2
        names[country.alpha_2] = country.alpha_2
    return names


def country_code(text: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country value, or None when it is not one we know
    ("Germany", "DEU", "deutschland" -> "DE"; "UK" -> "GB")."""
    if text is None or not text.strip():
        return None
    return _names().get(_key(text))


def normalise_countries(con: duckdb.DuckDBPyConnection, table: str = "staged_customers") -> int:
    """Replace each ``country`` of ``table`` that names a known country by its alpha-2 code
    (one lookup per distinct value); returns how many distinct values changed."""
    values = [
        row[0]
        for row in con.execute(
            f"select distinct country from {table} where country is not null"
        ).fetchall()
    ]
    changes = {v: code for v in values if (code := country_code(v)) is not None and code != v}
    if not changes:
        return 0
    mapping = pa.table(
        {
            "country_text": pa.array(list(changes), pa.string()),
            "country_code": pa.array(list(changes.values()), pa.string()),
        }
    )
    con.register("_country_codes", mapping)
    try:
        con.execute(
            f"update {table} set country = m.country_code from _country_codes m "
            f"where {table}.country = m.country_text"
        )
    finally:
        con.unregister("_country_codes")
    return len(changes)
