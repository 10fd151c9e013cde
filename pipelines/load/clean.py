"""Clean: type and normalise raw rows into ``staging.*`` (no row is dropped here).

Parsing and normalising is SQL (``sql/staging/*.sql``); phone numbers are normalised to
E.164 with ``phonenumbers`` (Google's libphonenumber rules), using the record's country as
the region for numbers written in national format.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import phonenumbers
import pyarrow as pa

from pipelines.config import Settings, SourceConfig
from pipelines.load import processing
from pipelines.load.countries import normalise_countries
from pipelines.sqlrun import ensure_bookkeeping_tables, has_table, install_macros, run_sql

log = logging.getLogger(__name__)

STAGING_ORDER = ("transactions", "customers", "events")


def source_params(source: SourceConfig | None) -> dict:
    """SQL parameters of one source's staging model (defaults for an absent source)."""
    return {
        # lists tried in order; [''] means ISO 8601 (DuckDB cannot type an empty list)
        "timestamp_format": _format_list(source.timestamp_format if source else None),
        "date_format": _format_list(source.date_format if source else None),
        "timezone": source.timezone if source else "UTC",
        "decimal_comma": bool(source.decimal_comma) if source else False,
        # '' keeps the list non-empty (DuckDB cannot type an empty list parameter)
        "missing_values": sorted(
            {"", *(v.strip().lower() for v in (source.missing_values if source else ()))}
        ),
        "keep_identical_lines": bool(source.keep_identical_lines) if source else False,
    }


def _format_list(formats: str | tuple[str, ...] | None) -> list[str]:
    if not formats:
        return [""]
    return [formats] if isinstance(formats, str) else list(formats)


@dataclass(frozen=True)
class StagingReport:
    """``rows``: rows in each ``staging.<source>`` after the step; ``files``: per source,
    which files were staged this run and which were kept from earlier runs."""

    rows: dict[str, int]
    files: dict[str, processing.SourceFiles]


def build_staging(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    full_refresh: bool = False,
    run_id: str | None = None,
) -> StagingReport:
    """Bring ``staging.transactions``, ``staging.customers`` and ``staging.events`` up to
    date: stage the rows of every file not yet processed under its source's current
    fingerprint (all files with ``full_refresh``), keep the rest as they are.

    With ``run_id`` (the clean step), first stop the run while a file an earlier run
    rejected is still delivered (:func:`processing.check_rejected_files_replaced`). Sources
    absent from the config give empty tables, so later layers need no special cases.
    """
    install_macros(con)
    ensure_bookkeeping_tables(con)
    # this run's exchange rates first: they are part of the transactions' fingerprint,
    # which decides whether a rejected file gets another chance
    write_fx_rates(con, settings)
    if run_id is not None:
        processing.check_rejected_files_replaced(con, settings, run_id)
    rows, files = {}, {}
    for name in STAGING_ORDER:
        found = processing.find_source_files(con, settings, name, full_refresh=full_refresh)
        processing.set_pending(con, found)
        _stage_pending(con, name, source_params(settings.sources.get(name)), found)
        files[name] = found
        rows[name] = con.execute(f"select count(*) from staging.{name}").fetchall()[0][0]
    return StagingReport(rows, files)


def _stage_pending(
    con: duckdb.DuckDBPyConnection, name: str, params: dict, found: processing.SourceFiles
) -> None:
    """Stage the pending files' rows into ``staging.<name>``, replacing what earlier runs
    staged from them. With every file pending the table is rebuilt, so a changed staging
    model (new columns) never meets rows of the old shape."""
    con.execute("create schema if not exists staging")
    exists = has_table(con, "staging", name)
    if exists:
        processing.remove_rows_of_pending(con, name)
    if exists and not found.pending:
        return
    run_sql(con, f"staging/{name}", params)
    if name == "customers":
        # the country first: it is the region of national phone numbers
        normalise_countries(con)
        normalise_phones(con)
    if exists and not found.is_everything:
        con.execute(f"insert into staging.{name} by name select * from staged_{name}")
    else:
        con.execute(f"create or replace table staging.{name} as select * from staged_{name}")
    con.execute(f"drop table staged_{name}")


def write_fx_rates(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """``staging.fx_rates``: units of each currency per one unit of the base currency.

    Without a ``[currency]`` table every amount is taken as one currency, so a missing
    currency and any single currency code convert at 1.
    """
    cur = settings.currency
    rates = dict(cur.rates)
    if cur.base:
        rates[cur.base] = 1.0
    con.execute("create schema if not exists staging")
    con.execute(
        "create or replace table staging.fx_rates (currency varchar, units_per_base "
        "double, is_configured boolean)"
    )
    if rates:
        con.executemany(
            "insert into staging.fx_rates values (?, ?, true)",
            [[k, v] for k, v in sorted(rates.items())],
        )
    else:
        # No [currency] table: amounts are taken as one currency, whatever the code says,
        # unless the exports mix codes (validation then asks for rates).
        con.execute("""insert into staging.fx_rates
                       select distinct upper(currency), 1.0, false from raw.transactions
                       where currency is not null""")


def normalise_phone(text: str | None, country: str | None) -> str | None:
    """E.164 form of a phone number, or None when it is not a possible number.

    ``country`` is an ISO 3166 alpha-2 code used for numbers in national format
    ("030 1234567" in DE); numbers with a leading + or 00 need none.
    """
    if not text:
        return None
    cleaned = text.strip()
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    region = country.upper() if country and len(country) == 2 else None
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_phones(con: duckdb.DuckDBPyConnection) -> int:
    """Add ``phone`` (E.164) to ``staged_customers`` (the customer rows this run stages);
    returns the numbers parsed this time.

    libphonenumber costs ~0.1 ms a number, which is minutes for a million customers, so
    each distinct (text, country) pair is parsed once, ever: results are kept in
    ``raw.phone_numbers`` (a pure function of its inputs, like a lookup table) and only
    pairs never seen before are parsed.
    """
    ensure_bookkeeping_tables(con)
    pairs = con.execute("""
        select distinct c.phone_text, c.country
        from staged_customers c
        where c.phone_text is not null
          and not exists (select 1 from raw.phone_numbers p
                          where p.phone_text = c.phone_text
                            and p.country is not distinct from c.country)""").fetchall()
    if pairs:
        lookup = pa.table(
            {
                "phone_text": pa.array([p[0] for p in pairs], pa.string()),
                "country": pa.array([p[1] for p in pairs], pa.string()),
                "phone": pa.array(
                    [normalise_phone(text, country) for text, country in pairs], pa.string()
                ),
            }
        )
        con.register("_phones", lookup)
        con.execute("insert into raw.phone_numbers select * from _phones")
        con.unregister("_phones")
    con.execute("""
        create or replace temp table staged_customers as
        select c.*, p.phone
        from staged_customers c
        left join raw.phone_numbers p
          on p.phone_text = c.phone_text and p.country is not distinct from c.country""")
    return len(pairs)
