"""Marketing-ready files beside the export lists, in ``<as_of>/marketing/``.

- ``<list>_profiles.csv`` for every list: the columns Klaviyo, Mailchimp and Shopify
  import without a mapping step, e-mail first: ``Email``, ``First Name``, ``Last Name``,
  ``Phone Number``, ``Email Marketing Consent`` (``yes``: every row of a list consented)
  and ``Tags`` (the list's name, and the customer's value tier and churn band).
- ``suppression.csv``: ``Email`` and ``Reason`` of every customer with an e-mail address
  who has not given marketing consent (``no_marketing_consent``), for the tools'
  suppression (unsubscribe) import, so a withdrawn consent reaches the tool too.

Names are split at the first space (first name, then the rest); the cells are escaped
against spreadsheet formulas like the lists' own CSVs. An erasure (``crm forget``)
rebuilds an export directory from its manifest's lists, without this folder; the next
run writes it again without the forgotten customers.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import duckdb
import pyarrow as pa

MARKETING_DIR = "marketing"
PROFILE_COLUMNS = (
    "Email",
    "First Name",
    "Last Name",
    "Phone Number",
    "Email Marketing Consent",
    "Tags",
)
SUPPRESSION_COLUMNS = ("Email", "Reason")


# A normalised E.164 phone (+ and digits) is no formula: the tools need its leading +.
_E164 = re.compile(r"\+\d{4,15}")


def _cell(value) -> str:
    from pipelines.publish.exports import _csv_text

    if isinstance(value, str) and _E164.fullmatch(value):
        return value
    return _csv_text(value)


def _write(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    from pipelines.publish.exports import FILE_MODE

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(tuple(_cell(v) for v in row) for row in rows)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buffer.getvalue().encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def profile_rows(con: duckdb.DuckDBPyConnection, table: pa.Table, list_name: str) -> list[tuple]:
    """The :data:`PROFILE_COLUMNS` rows of one export list (``table``, the list's rows in
    :data:`pipelines.publish.exports.EXPORT_SCHEMA`), in the list's order; the phone, tier
    and churn band come from ``marts.customer_360``."""
    con.register("_marketing_list", table)
    try:
        return con.execute(
            """
            select l.email,
                   nullif(split_part(trim(l.full_name), ' ', 1), ''),
                   nullif(trim(substr(trim(l.full_name),
                                      length(split_part(trim(l.full_name), ' ', 1)) + 1)), ''),
                   c.phone, 'yes',
                   concat_ws(', ', $list, c.value_tier, 'churn ' || c.churn_band)
            from _marketing_list l
            left join marts.customer_360 c using (customer_id)
            order by l.customer_id""",
            {"list": list_name},
        ).fetchall()
    finally:
        con.unregister("_marketing_list")


def suppression_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    """(e-mail, reason) of every customer in ``marts.customer_360`` with an e-mail
    address and no marketing consent, one row per address, sorted."""
    return con.execute("""
        select distinct email, 'no_marketing_consent' from marts.customer_360
        where email is not null and marketing_consent is not true
        order by 1""").fetchall()


def write_marketing_files(
    con: duckdb.DuckDBPyConnection, directory: Path, tables: dict[str, pa.Table]
) -> list[Path]:
    """Write ``directory/marketing/``: a profile CSV per list of ``tables`` (file stem ->
    list rows) and the suppression file. Returns the paths written."""
    folder = directory / MARKETING_DIR
    os.mkdir(folder, 0o700)
    paths = []
    for stem in sorted(tables):
        path = folder / f"{stem}_profiles.csv"
        _write(path, PROFILE_COLUMNS, profile_rows(con, tables[stem], stem))
        paths.append(path)
    path = folder / "suppression.csv"
    _write(path, SUPPRESSION_COLUMNS, suppression_rows(con))
    return [*paths, path]
