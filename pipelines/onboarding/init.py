"""``crm init EXPORT_FILE...``: a commented crm.toml for exports the tool has never seen.

Each file is sampled (pipelines/onboarding/sniff.py), its columns are mapped to canonical
fields by header names (English and German synonyms, ignoring case, spaces and
punctuation) and, where no header says it, by content (e-mails, phones, timestamps,
amounts), and it is given to the source it can feed (transactions, customers, events).
The text is checked with the config loader before it is written, so it loads as it is.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from pipelines.config_sections import CANONICAL_FIELDS
from pipelines.errors import ConfigError, InputError
from pipelines.onboarding import sniff

# canonical field -> header names that mean it, normalised (lower case, letters and digits)
_ID = (
    "customerid customer cust custid custno customerno customernumber client clientid "
    "clientno kunde kundenid kundennr kundennummer userid user buyerid memberid accountid"
)
SYNONYMS: dict[str, dict[str, str]] = {
    "transactions": {
        "customer_id": _ID,
        "order_id": "orderid order orderno ordernumber invoice invoiceno invoiceid "
        "invoicenumber bestellnummer bestellung bestellnr transactionid txnid receipt belegnr",
        "order_ts": "orderts orderdate orderdatetime ordertime invoicedate date datum "
        "timestamp createdat purchasedate purchasedat transactiondate bestelldatum datetime "
        "time created",
        "amount": "amount total revenue sales ordertotal totalamount betrag umsatz summe "
        "gross dollars spend linetotal value",
        "quantity": "quantity qty menge anzahl units",
        "unit_price": "unitprice price preis einzelpreis itemprice",
        "currency": "currency curr ccy waehrung währung currencycode",
        "product_id": "productid stockcode sku itemid article artikel artikelnr product item",
        "channel": "channel kanal saleschannel",
        "payment_method": "paymentmethod payment paymenttype zahlungsart",
        "status": "status orderstatus state",
    },
    "customers": {
        "customer_id": _ID + " id",
        "email": "email emailaddress mail",
        "phone": "phone telephone tel mobile telefon phonenumber handy",
        "full_name": "name fullname customername kundenname",
        "birth_date": "birthdate dob dateofbirth geburtsdatum birthday",
        "gender": "gender sex geschlecht",
        "city": "city town ort stadt",
        "country": "country land countrycode nation",
        "signup_ts": "signupts signup signupdate registered registrationdate customersince "
        "firstseen",
        "marketing_consent": "marketingconsent marketingoptin optin newsletter consent "
        "acceptsmarketing emailoptin",
        "updated_at": "updatedat updated modified lastmodified changedat",
    },
    "events": {
        "customer_id": _ID,
        "event_id": "eventid id",
        "event_ts": "eventts eventtime timestamp time ts occurredat createdat date datetime",
        "event_type": "event eventtype type action eventname",
        "channel": "channel kanal",
        "value": "value score rating",
        "properties": "properties props attributes payload",
    },
}
TIMESTAMP_FIELDS = {"order_ts", "signup_ts", "updated_at", "event_ts"}
KNOWN_STATUSES = {
    "completed", "complete", "paid", "shipped", "delivered", "fulfilled", "ok", "cancelled",
    "canceled", "cancel", "void", "voided", "refunded", "refund", "returned", "return",
}  # fmt: skip
DEFAULT_EARLIEST = date(1970, 1, 2)


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-zäöüß]", "", name.lower())


@dataclass
class Plan:
    """What ``crm init`` decided for one file and one source."""

    sample: sniff.Sample
    source: str
    columns: dict[str, str]  # canonical -> header
    how: dict[str, str]  # canonical -> "header" | "content"
    timestamps: sniff.Timestamps | None = None
    date_formats: list[str] = field(default_factory=list)
    decimal_comma: bool = False
    missing_id_share: float = 0.0
    failing_share: float = 0.0
    notes: list[str] = field(default_factory=list)
    feeds: list[str] = field(default_factory=list)


def _by_header(sample: sniff.Sample, source: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for canonical, words in SYNONYMS[source].items():
        for word in words.split():  # the first synonym a header has wins
            match = next((c for c in sample.columns if _norm(c) == word and c not in used), None)
            if match is not None:
                mapping[canonical] = match
                used.add(match)
                break
    return mapping


def _is_timestamp(sample: sniff.Sample, column: str) -> bool:
    if column in sample.typed_timestamps:
        return True
    values = sample.values[column]
    if not any(v and any(ch.isdigit() for ch in v) for v in values[:50]):
        return False
    return sniff.timestamp_formats(values, limit=200).parsed >= 0.9


def _by_content(sample: sniff.Sample, source: str, mapping: dict[str, str]) -> dict[str, str]:
    """Fields no header named, found by what the column holds."""
    found: dict[str, str] = {}
    free = [c for c in sample.columns if c not in mapping.values()]

    def take(canonical: str, test) -> None:
        if canonical in mapping or canonical not in SYNONYMS[source]:
            return
        for column in free:
            if column not in found.values() and test(column):
                found[canonical] = column
                return

    take("email", lambda c: sniff.is_email(sample.values[c]))
    # a customer list's dates could be sign-ups or anything else: only a header says so
    ts_field = {"transactions": "order_ts", "events": "event_ts"}.get(source)
    if ts_field:
        take(ts_field, lambda c: _is_timestamp(sample, c))
    take("phone", lambda c: sniff.is_phone(sample.values[c]))
    take(
        "amount",
        lambda c: (
            sniff.number_style(sample.values[c]) is not None
            and sniff.has_decimals(sample.values[c])
            and not _is_timestamp(sample, c)
        ),
    )
    return found


def plan_file(sample: sniff.Sample) -> list[Plan]:
    """Every source the file can feed, best first (an empty list: none)."""
    plans = []
    for source in ("transactions", "events", "customers"):
        header = _by_header(sample, source)
        content = _by_content(sample, source, header)
        columns = {**header, **content}
        how = {k: "header" for k in header} | {k: "content" for k in content}
        required, _ = CANONICAL_FIELDS[source]
        derivable = {"amount"} if {"quantity", "unit_price"} <= set(columns) else set()
        if any(f not in columns and f not in derivable for f in required):
            continue
        if source == "customers" and len(columns) < 2:
            continue  # an id alone says nothing about a customer
        if source == "transactions" and "event_type" in _by_header(sample, "events"):
            if not ({"amount"} & set(header) or {"quantity", "unit_price"} <= set(header)):
                continue  # an event log with a number in it is not an order list
        plans.append(Plan(sample, source, columns, how))
    for plan in plans:
        plan.feeds = [p.source for p in plans]
    return plans


def _finish(plan: Plan) -> None:
    """Formats, decimal comma, dropped fields and the failing share of one plan."""
    sample, columns = plan.sample, plan.columns
    n = max(sample.rows, 1)
    # timestamps: one list of formats for the source's timestamp fields
    ts_columns = [columns[f] for f in TIMESTAMP_FIELDS & set(columns)]
    text_ts = [c for c in ts_columns if c not in sample.typed_timestamps]
    if text_ts:
        values = [v for c in text_ts for v in sample.values[c]]
        plan.timestamps = sniff.timestamp_formats(values)
        if plan.timestamps.order_note:
            plan.notes.append(f"timestamps {plan.timestamps.order_note}.")
        if len(plan.timestamps.formats) > 1:
            plan.notes.append(
                f"the timestamps come in {len(plan.timestamps.formats)} formats; each value "
                "gets the first one that reads it."
            )
    if "birth_date" in columns:
        births = sniff.timestamp_formats(sample.values[columns["birth_date"]])
        plan.date_formats = births.formats
        if births.parsed < 0.9:
            plan.notes.append(
                f"birth dates in column {columns['birth_date']!r} are not in one readable "
                "format; they are left out (a blanked field, not a lost row)."
            )
            del columns["birth_date"]
            plan.date_formats = []
    # amounts: decimal comma
    for f in ("amount", "unit_price", "quantity", "value"):
        if f in columns and sniff.number_style(sample.values[columns[f]]) == "comma":
            plan.decimal_comma = True
    if plan.decimal_comma:
        plan.notes.append("amounts use a decimal comma (1.234,50).")
    # statuses the pipeline does not know would quarantine their rows
    if "status" in columns:
        unknown = {
            v.lower() for v in sample.values[columns["status"]] if v is not None
        } - KNOWN_STATUSES
        if unknown:
            plan.notes.append(
                f"column {columns['status']!r} holds statuses the pipeline does not know "
                f"({', '.join(sorted(unknown)[:5])}); it is not mapped, so every order counts "
                "as completed. Map it once its values are completed/cancelled/refunded/returned."
            )
            del columns["status"]
    # several currencies need exchange rates: left unmapped rather than quarantined
    if "currency" in columns:
        codes = {v.upper() for v in sample.values[columns["currency"]] if v}
        if len(codes) > 1:
            plan.notes.append(
                f"column {columns['currency']!r} holds {len(codes)} currencies "
                f"({', '.join(sorted(codes)[:5])}); it is not mapped, so amounts are added up "
                "as one currency. Map it and add [currency] base and rates to convert them."
            )
            del columns["currency"]
    # rows a run will quarantine: a missing id, an unreadable or implausible timestamp
    ids = sample.values[columns["customer_id"]]
    plan.missing_id_share = sum(v is None for v in ids) / n
    bad = {i for i, v in enumerate(ids) if v is None}
    main_ts = {"transactions": "order_ts", "events": "event_ts"}.get(plan.source)
    if main_ts and main_ts in columns:
        bad |= _bad_timestamps(plan, columns[main_ts])
    plan.failing_share = len(bad) / n


def _bad_timestamps(plan: Plan, column: str) -> set[int]:
    """Rows whose timestamp the chosen formats do not read, or that lie before the
    default earliest plausible date (sentinels like 1900-01-01)."""
    import duckdb

    values = plan.sample.values[column]
    if column in plan.sample.typed_timestamps:
        formats = [""]
    else:
        formats = (plan.timestamps.formats if plan.timestamps else []) or [""]
    con = duckdb.connect()
    try:
        con.execute(
            "create temp table v as select * from unnest($values) with ordinality t(txt, i)",
            {"values": values},
        )
        parse = "try_cast(txt as timestamp)" if formats == [""] else "try_strptime(txt, $fmt)"
        params = {"earliest": datetime.combine(DEFAULT_EARLIEST, datetime.min.time())}
        if formats != [""]:
            params["fmt"] = formats
        rows = con.execute(
            f"""select i - 1 from (select i, {parse}::timestamp as ts from v
                                  where txt is not null)
                where ts is null or ts < $earliest""",
            params,
        ).fetchall()
    finally:
        con.close()
    return {r[0] for r in rows}


# --- the config text -----------------------------------------------------------------------


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def render(plans: list[Plan], out: Path, skipped: list[str]) -> str:
    """The crm.toml text for the chosen plans (one per source)."""
    base = out.parent
    lines = [
        "# crm.toml written by `crm init` from "
        + ", ".join(p.sample.path.name for p in plans)
        + f" on {date.today().isoformat()}.",
        "# Every path is relative to this file. Check it with `crm check --config "
        f"{out.name}`, run it with `crm run --config {out.name}`.",
        "",
        "[warehouse]",
        'path = "data/warehouse/crm.duckdb"          # working database (the pipeline\'s own)',
        'serving_path = "data/serving/crm.duckdb"    # published database (BI opens this, read-only)',
        'memory_limit = "4GB"',
        "",
    ]
    for note in skipped:
        lines.append(f"# {note}")
    if skipped:
        lines.append("")
    failing = 0.0
    for plan in plans:
        s = plan.sample
        lines.append(f"[sources.{plan.source}]")
        lines.append(
            f"# from {s.path.name}: {s.rows} row(s) sampled; this file can feed: "
            + ", ".join(plan.feeds)
            + "."
        )
        for note in plan.notes:
            lines.append(f"# Note: {note}")
        lines.append(f"path = {_q(_rel(s.path, base))}")
        lines.append(f"format = {_q(s.format)}")
        if s.format == "csv":
            if s.delimiter and s.delimiter != ",":
                lines.append(f"delimiter = {_q(s.delimiter)}")
            if s.encoding != "utf-8":
                lines.append(f"encoding = {_q(s.encoding)}               # not UTF-8")
        if plan.decimal_comma:
            lines.append('decimal_comma = true                   # "1.234,50" means 1234.50')
        if plan.timestamps and plan.timestamps.formats:
            formats = plan.timestamps.formats
            value = _q(formats[0]) if len(formats) == 1 else "[" + ", ".join(map(_q, formats)) + "]"
            lines.append(f"timestamp_format = {value}")
        elif plan.timestamps is not None or s.typed_timestamps:
            lines.append("# timestamps are ISO 8601 (or typed by the file): no timestamp_format")
        if plan.date_formats:
            value = (
                _q(plan.date_formats[0])
                if len(plan.date_formats) == 1
                else "[" + ", ".join(map(_q, plan.date_formats)) + "]"
            )
            lines.append(f"date_format = {value}")
        lines.append(
            'timezone = "UTC"                       # the zone of timestamps without an offset: '
            'the export does not say; set it (e.g. "Europe/Berlin") if they are local time'
        )
        lines.append(f"[sources.{plan.source}.columns]")
        for canonical, column in plan.columns.items():
            how = "header" if plan.how.get(canonical) == "header" else "content"
            lines.append(f"{canonical} = {_q(column)}  # found by its {how}")
        unmapped = [c for c in s.columns if c not in plan.columns.values()]
        if unmapped:
            lines.append("# not mapped (ignored): " + ", ".join(unmapped))
        if plan.missing_id_share:
            lines.append(
                f"# {plan.missing_id_share:.0%} of the rows have no customer id: normal for "
                "guest checkouts. Such rows are quarantined (rule customer_id_present), not "
                "counted as customers; [validation].max_failed_share below allows them."
            )
        lines.append("")
        failing = max(failing, plan.failing_share)
    limit = max(0.10, math.ceil((failing + 0.05) * 20) / 20)
    lines += [
        "[validation]",
        f"earliest_date = {_q(DEFAULT_EARLIEST.isoformat())}"
        "          # earlier timestamps are implausible: catches 1900-01-01, 1970-01-01 and",
        "#                                         #   the like; lower it for older real history",
        f"max_failed_share = {limit:.2f}"
        + (
            f"                  # the sample's share of rows a run quarantines is {failing:.0%}; "
            "a file with more stops the run"
            if failing
            else "                  # a file with more failing rows stops the run"
        ),
        "",
        "[exports]",
        'path = "exports"                        # exports/<as_of>/: one CSV + Parquet per list',
        "",
        "[report]",
        'path = "reports"                        # reports/<as_of>/report.html',
        "",
    ]
    return "\n".join(lines)


def init_config(files: list[Path], out: Path, force: bool = False) -> str:
    """Write a crm.toml for ``files`` to ``out``; returns a summary to print.

    Raises :class:`InputError` for an unreadable file or when no file can feed
    transactions, :class:`ConfigError` when ``out`` exists and ``force`` is not set.
    """
    from pipelines.config import settings_from_dict

    out = out.resolve()
    if out.exists() and not force:
        raise ConfigError(f"{out} exists already; pass --force to replace it, or --out PATH.")
    chosen: dict[str, Plan] = {}
    skipped: list[str] = []
    summary: list[str] = []
    for path in files:
        sample = sniff.sample_file(Path(path))
        plans = plan_file(sample)
        if not plans:
            raise InputError(
                f"{path}: no column mapping found. crm init needs a header row with a "
                "customer id and, for orders, a date and an amount (or quantity and unit "
                f"price). Columns found: {', '.join(sample.columns) or '(none)'}."
            )
        plan = next((p for p in plans if p.source not in chosen), None)
        if plan is None:
            skipped.append(
                f"{sample.path.name} can feed {', '.join(p.source for p in plans)}, which "
                "an earlier file feeds already: it is left out. Put files of one layout "
                "under one path glob."
            )
            continue
        _finish(plan)
        chosen[plan.source] = plan
        summary.append(
            f"{sample.path.name}: {plan.source} ({len(plan.columns)} field(s) mapped; "
            f"can feed {', '.join(plan.feeds)})"
        )
    if "transactions" not in chosen:
        raise InputError(
            "None of the files can feed transactions (a customer id, an order date and "
            "an amount, or quantity and unit price): the pipeline needs one."
        )
    order = ["transactions", "customers", "events"]
    plans = [chosen[s] for s in order if s in chosen]
    text = render(plans, out, skipped)
    settings_from_dict(tomllib.loads(text), base_dir=out.parent)  # it must load as it is
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return "\n".join(
        [f"Wrote {out}:", *(f"  {line}" for line in summary), *(f"  {s}" for s in skipped)]
        + [f"Check it with: crm check --config {out}"]
    )
