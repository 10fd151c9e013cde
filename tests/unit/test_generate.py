"""Tests of the synthetic sample generator (pipelines/generate.py)."""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import date, datetime
from pathlib import Path

import numpy as np
import phonenumbers
import polars as pl
import pytest

from pipelines.sample import (
    CUSTOMER_COLUMNS,
    EVENT_KEYS,
    TRANSACTION_COLUMNS,
    TRUTH_CUSTOMER_COLUMNS,
    TRUTH_DUPLICATE_COLUMNS,
    generate_sample,
)
from pipelines.sample.orders import _split_order_values

OBSERVATION_END = datetime(2026, 1, 1)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A moderately sized generation shared by the read-only tests (~1 s)."""
    out = tmp_path_factory.mktemp("sample")
    generate_sample(out, customers=6000, seed=11, progress=False)
    return out


def read_text_csv(path: Path) -> pl.DataFrame:
    # Everything as text: ids must survive without any type inference.
    return pl.read_csv(path, infer_schema=False)


def read_events(path: Path) -> pl.DataFrame:
    schema = {
        "id": pl.String,
        "user": pl.String,
        "timestamp": pl.String,
        "event": pl.String,
        "channel": pl.String,
        "score": pl.Float64,
        "props": pl.Struct({"campaign": pl.String, "topic": pl.String, "survey": pl.String}),
    }
    return pl.read_ndjson(path, schema=schema).select(
        "user",
        event_at=pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%SZ"),
        event="event",
        score="score",
        survey=pl.col("props").struct.field("survey"),
    )


@pytest.fixture(scope="module")
def events(sample) -> pl.DataFrame:
    return read_events(sample / "events.jsonl")


def normalise_email(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def normalise_phone(phone: str | None, country: str) -> str | None:
    if not phone:
        return None
    number = phonenumbers.parse(phone, country)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_name(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(sorted(stripped.casefold().replace(",", " ").split()))


def customers_with_person(sample: Path) -> pl.DataFrame:
    customers = read_text_csv(sample / "customers.csv")
    duplicates = read_text_csv(sample / "truth" / "duplicates.csv")
    customers = customers.join(duplicates, left_on="CustomerID", right_on="customer_id", how="left")
    return customers.with_columns(
        email_key=pl.col("Email").map_elements(normalise_email, return_dtype=pl.String),
        phone_key=pl.struct("Phone", "Country").map_elements(
            lambda r: normalise_phone(r["Phone"], r["Country"]), return_dtype=pl.String
        ),
        name_key=pl.col("FullName").map_elements(normalise_name, return_dtype=pl.String),
    )


def completed_orders(sample: Path) -> pl.DataFrame:
    """One row per completed order: person, time, value in EUR."""
    rates = json.loads((sample / "truth" / "params.json").read_text())["fx_rates_per_eur"] | {
        "EUR": 1.0
    }
    lines = read_text_csv(sample / "transactions.csv").filter(pl.col("Status") == "completed")
    duplicates = read_text_csv(sample / "truth" / "duplicates.csv")
    return (
        lines.join(duplicates, left_on="CustomerID", right_on="customer_id")
        .with_columns(
            order_at=pl.col("InvoiceDate").str.to_datetime("%Y-%m-%d %H:%M:%S"),
            amount_eur=pl.col("Quantity").cast(pl.Int64)
            * pl.col("UnitPrice").cast(pl.Float64)
            / pl.col("Currency").replace_strict(rates, return_dtype=pl.Float64),
        )
        .group_by("InvoiceNo")
        .agg(pl.col("person_id").first(), pl.col("order_at").first(), pl.col("amount_eur").sum())
    )


def truth_customers(sample: Path) -> pl.DataFrame:
    return read_text_csv(sample / "truth" / "customers.csv").with_columns(
        pl.col("lambda_per_day", "p_dropout", "nu").cast(pl.Float64),
        pl.col("completed_orders").cast(pl.Int64),
        pl.col("first_purchase_at", "dropout_at").str.to_datetime("%Y-%m-%d %H:%M:%S"),
        is_prospect=pl.col("is_prospect") == "true",
    )


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_sample(first, customers=300, seed=5, progress=False)
    generate_sample(again, customers=300, seed=5, progress=False)
    generate_sample(other, customers=300, seed=6, progress=False)
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert [str(n) for n in names] == [
        "customers.csv",
        "events.jsonl",
        "transactions.csv",
        "truth/customers.csv",
        "truth/duplicates.csv",
        "truth/params.json",
    ]
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / "transactions.csv").read_bytes() != (other / "transactions.csv").read_bytes()


def test_report_counts_match_the_files_written(tmp_path):
    report = generate_sample(tmp_path, customers=400, seed=3, progress=False)
    for role, rows in report.rows.items():
        lines = report.paths[role].read_text(encoding="utf-8").count("\n")
        assert lines == rows + (role != "events"), role
    assert report.rows["truth_customers"] == report.customers + report.prospects
    assert (
        report.rows["customers"] == report.customers + report.prospects + report.duplicate_records
    )
    statuses = read_text_csv(report.paths["transactions"]).filter(pl.col("Status") == "completed")
    assert statuses["InvoiceNo"].n_unique() == report.completed_orders


def test_files_have_exactly_the_documented_columns(sample):
    def header(path: Path) -> tuple[str, ...]:
        return tuple(path.read_text(encoding="utf-8").split("\n", 1)[0].split(","))

    assert (
        header(sample / "transactions.csv")
        == TRANSACTION_COLUMNS
        == (
            "InvoiceNo",
            "LineNo",
            "CustomerID",
            "InvoiceDate",
            "StockCode",
            "Quantity",
            "UnitPrice",
            "Currency",
            "Channel",
            "PaymentMethod",
            "Status",
        )
    )
    assert (
        header(sample / "customers.csv")
        == CUSTOMER_COLUMNS
        == (
            "CustomerID",
            "Email",
            "Phone",
            "FullName",
            "BirthDate",
            "Gender",
            "City",
            "Country",
            "SignupDate",
            "MarketingOptIn",
            "UpdatedAt",
        )
    )
    assert header(sample / "truth" / "customers.csv") == TRUTH_CUSTOMER_COLUMNS
    assert (
        header(sample / "truth" / "duplicates.csv")
        == TRUTH_DUPLICATE_COLUMNS
        == ("customer_id", "person_id")
    )
    with (sample / "events.jsonl").open(encoding="utf-8") as events:
        for line in events:
            assert (
                tuple(json.loads(line))
                == EVENT_KEYS
                == ("id", "user", "timestamp", "event", "channel", "score", "props")
            )
    params = json.loads((sample / "truth" / "params.json").read_text())
    assert set(params["bgnbd"]) == {"r", "alpha", "a", "b"}
    assert set(params["gamma_gamma"]) == {"p", "q", "gamma"}
    assert (params["start"], params["end"], params["seed"], params["customers"]) == (
        "2023-01-01",
        "2025-12-31",
        11,
        6000,
    )


def test_values_have_the_documented_formats(sample):
    lines = read_text_csv(sample / "transactions.csv")
    assert lines["InvoiceDate"].str.contains(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$").all()
    assert lines["UnitPrice"].str.contains(r"^\d+\.\d\d$").all()
    assert lines["Quantity"].str.contains(r"^-?[1-9]\d*$").all()
    assert set(lines["Status"]) == {"completed", "cancelled", "refunded", "returned"}
    assert set(lines["Channel"]) == {"web", "app", "store"}
    assert set(lines["PaymentMethod"]) == {"card", "paypal", "invoice"}
    currencies = lines["Currency"].value_counts(normalize=True).sort("proportion")
    assert currencies["Currency"][-1] == "EUR" and currencies["proportion"][-1] > 0.95
    # Several distinct hours of the day, with fewer orders at night than in the evening.
    hours = lines["InvoiceDate"].str.slice(11, 2).cast(pl.Int64)
    assert (hours.is_between(2, 5)).mean() < 0.5 * (hours.is_between(18, 21)).mean()
    customers = read_text_csv(sample / "customers.csv")
    birth = customers["BirthDate"].drop_nulls()
    assert birth.str.contains(r"^\d{4}-\d\d-\d\d$").all()
    assert 0.03 < customers["BirthDate"].null_count() / customers.height < 0.3
    assert set(customers["MarketingOptIn"]) == {"yes", "no"}
    assert 0.55 < (customers["MarketingOptIn"] == "yes").mean() < 0.65
    assert (customers["SignupDate"] <= customers["UpdatedAt"].str.slice(0, 10)).all()
    with (sample / "events.jsonl").open(encoding="utf-8") as events:
        first = json.loads(next(events))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["timestamp"])


def test_customer_ids_are_zero_padded_text_everywhere(sample, events):
    customers = read_text_csv(sample / "customers.csv")
    ids = customers["CustomerID"]
    assert ids.str.contains(r"^\d{7}$").all()
    assert ids.str.starts_with("0").all()  # 6600 records: all ids below 1,000,000
    assert ids.is_unique().all()
    known = set(ids)
    assert set(read_text_csv(sample / "transactions.csv")["CustomerID"]) <= known
    assert set(events["user"]) <= known
    duplicates = read_text_csv(sample / "truth" / "duplicates.csv")
    assert sorted(duplicates["customer_id"]) == sorted(known)
    truth_ids = (
        read_text_csv(sample / "truth" / "customers.csv")["customer_ids"].str.split("|").explode()
    )
    assert sorted(truth_ids) == sorted(known)


def test_duplicate_records_are_recognisable_by_email_or_phone_and_name(sample):
    customers = customers_with_person(sample)
    persons = (
        customers.group_by("person_id").agg(pl.all()).filter(pl.col("CustomerID").list.len() > 1)
    )
    assert 0.015 < persons.height / customers["person_id"].n_unique() < 0.025
    by_email = by_phone = 0
    for row in persons.iter_rows(named=True):
        same_email = len(set(row["email_key"])) == 1 and row["email_key"][0] is not None
        same_phone_and_name = (
            len(set(row["phone_key"])) == 1
            and row["phone_key"][0] is not None
            and len(set(row["name_key"])) == 1
        )
        assert same_email or same_phone_and_name, row
        by_email += same_email
        by_phone += same_phone_and_name and not same_email
        # A second record looks different as written: that is what makes it a duplicate.
        assert row["Email"][0] != row["Email"][1] or row["Phone"][0] != row["Phone"][1]
    assert by_email > 10 and by_phone > 10


def test_phone_format_variants_of_one_person_normalise_alike(sample):
    customers = customers_with_person(sample)
    pairs = (
        customers.filter(pl.col("phone_key").is_not_null())
        .group_by("person_id")
        .agg(pl.col("Phone"), pl.col("phone_key"))
        .filter(pl.col("Phone").list.len() > 1)
    )
    assert pairs.height > 10
    for written, normalised in pairs.select("Phone", "phone_key").iter_rows():
        assert written[0] != written[1]
        assert normalised[0] == normalised[1]


def test_different_people_never_share_an_email_or_a_phone(sample):
    customers = customers_with_person(sample)
    for key in ("email_key", "phone_key"):
        shared = (
            customers.filter(pl.col(key).is_not_null())
            .group_by(key)
            .agg(pl.col("person_id").n_unique().alias("people"))
            .filter(pl.col("people") > 1)
        )
        assert shared.is_empty(), shared


def test_different_people_share_surnames_cities_and_even_full_names(sample):
    customers = customers_with_person(sample)
    originals = customers.unique("person_id", keep="first")
    surname = originals.with_columns(surname=pl.col("name_key").str.split(" ").list.last())
    for keys in (["surname", "City"], ["name_key"], ["name_key", "City"]):
        shared = surname.group_by(keys).agg(pl.col("person_id").n_unique().alias("people"))
        assert shared.filter(pl.col("people") > 1).height > 5, keys


def test_phone_numbers_are_valid_for_their_country_in_varied_formats(sample):
    customers = read_text_csv(sample / "customers.csv").filter(pl.col("Phone").is_not_null())
    for phone, country in customers.select("Phone", "Country").iter_rows():
        number = phonenumbers.parse(phone, country)
        assert phonenumbers.is_valid_number(number), (phone, country)
        assert phonenumbers.region_code_for_number(number) == country, (phone, country)
    phones = customers["Phone"]
    # International (+49, 0049), national (030 ...), and decorated ((030) ..., 030/..., +49 (0)30 ...).
    for pattern in (r"^\+\d", r"^00\d", r"^0[1-9]", r"^\(", "/", r"\(0\)", "-", r"\."):
        assert phones.str.contains(pattern).any(), pattern


def test_customer_records_cover_countries_and_non_ascii_names(sample):
    customers = read_text_csv(sample / "customers.csv")
    assert {"DE", "AT", "FR", "GB", "NL", "US", "CN"} <= set(customers["Country"])
    names = customers["FullName"]
    assert names.str.contains("[äöüß]").any()
    assert names.str.contains("[éèçëï]").any()
    assert names.str.contains(r"[\p{Han}]").any()
    emails = customers["Email"].drop_nulls().str.strip_chars().str.to_lowercase()
    assert emails.str.contains(r"^[a-z_.\-]+\d+@[a-z0-9.\-]+\.[a-z]+$").all()


def test_completed_orders_per_person_match_the_truth(sample):
    orders = completed_orders(sample)
    truth = truth_customers(sample)
    observed = orders.group_by("person_id").agg(
        n=pl.len(), first_at=pl.col("order_at").min(), last_at=pl.col("order_at").max()
    )
    both = truth.join(observed, on="person_id", how="left").with_columns(pl.col("n").fill_null(0))
    assert (both["n"] == both["completed_orders"]).all()
    buyers = both.filter(~pl.col("is_prospect"))
    assert (buyers["completed_orders"] >= 1).all()
    assert (both.filter(pl.col("is_prospect"))["completed_orders"] == 0).all()
    assert (buyers["first_at"] == buyers["first_purchase_at"]).all()
    dropped = buyers.filter(pl.col("dropout_at").is_not_null())
    # The dropout follows the last purchase, and only ever a repeat purchase.
    assert (dropped["last_at"] == dropped["dropout_at"]).all()
    assert (dropped["completed_orders"] >= 2).all()
    # Births fall in the first 70% of the window.
    span = (OBSERVATION_END - datetime(2023, 1, 1)).total_seconds()
    birth_share = (buyers["first_purchase_at"] - datetime(2023, 1, 1)).dt.total_seconds() / span
    # (The time-of-day mapping may move a birth within its day, past 70% by under a day.)
    assert birth_share.max() < 0.7 + 1 / 1096 and birth_share.min() >= 0


def test_split_order_values_sum_exactly_to_the_order_value():
    rng = np.random.default_rng(0)
    cents = np.concatenate([rng.integers(1, 500, 2000), rng.integers(500, 200_000, 20_000)])
    order, line_no, qty, price = _split_order_values(rng, cents)
    total = np.bincount(order, qty * price, minlength=cents.size)
    assert np.array_equal(total.astype(np.int64), cents)
    assert (qty >= 1).all() and (price >= 1).all()
    lines = np.bincount(order, minlength=cents.size)
    assert lines.min() == 1 and lines.max() == 4
    assert (lines[cents < 500] == 1).all()
    assert 1.5 < lines[cents >= 500].mean() < 1.9
    # Line numbers are 1..n within each order.
    assert np.array_equal(np.bincount(order, line_no), lines * (lines + 1) / 2)


def test_order_lines_add_up_to_gamma_gamma_order_values(sample):
    orders = completed_orders(sample)
    truth = truth_customers(sample).filter(~pl.col("is_prospect"))
    params = json.loads((sample / "truth" / "params.json").read_text())["gamma_gamma"]
    spend = orders.group_by("person_id").agg(total=pl.col("amount_eur").sum(), n=pl.len())
    both = truth.join(spend, on="person_id")
    # E[order value | nu] = p / nu (Fader, Hardie & Lee 2005): totals match within a few %.
    expected = (both["n"] * params["p"] / both["nu"]).sum()
    assert abs(both["total"].sum() / expected - 1) < 0.05
    assert 60 < orders["amount_eur"].mean() < 80
    assert (orders["amount_eur"] > 0).all()


def test_cancellations_refunds_and_returns_come_on_top_in_the_documented_shares(sample):
    lines = read_text_csv(sample / "transactions.csv").with_columns(
        pl.col("Quantity").cast(pl.Int64), pl.col("LineNo").cast(pl.Int64)
    )
    orders = lines.group_by("InvoiceNo").agg(
        pl.col("Status").first(), pl.col("Status").n_unique().alias("k")
    )
    assert (orders["k"] == 1).all()
    counts = dict(orders["Status"].value_counts().iter_rows())
    assert 0.02 < counts["cancelled"] / counts["completed"] < 0.04
    assert 0.012 < counts["refunded"] / counts["completed"] < 0.03
    assert 0.02 < counts["returned"] / counts["completed"] < 0.04
    returns = lines.filter(pl.col("Status") == "returned")
    assert returns["InvoiceNo"].str.starts_with("R").all() and (returns["Quantity"] < 0).all()
    assert (lines.filter(pl.col("Status") != "returned")["Quantity"] > 0).all()
    original = lines.filter(pl.col("Status") == "completed").select(
        "InvoiceNo",
        "CustomerID",
        "StockCode",
        "UnitPrice",
        "Quantity",
        pl.col("InvoiceDate").alias("sold_at"),
    )
    matched = returns.with_columns(InvoiceNo=pl.col("InvoiceNo").str.slice(1)).join(
        original,
        on=["InvoiceNo", "CustomerID", "StockCode", "UnitPrice"],
        how="left",
        suffix="_sold",
    )
    # Every returned line matches a sold line of the same customer, item and price, days later.
    matched = matched.group_by("InvoiceNo", "LineNo").agg(
        pl.col("Quantity").first(),
        pl.col("Quantity_sold").max(),
        pl.col("InvoiceDate").first(),
        pl.col("sold_at").min(),
    )
    assert matched["Quantity_sold"].null_count() == 0
    assert (-matched["Quantity"] <= matched["Quantity_sold"]).all()
    assert (matched["InvoiceDate"] > matched["sold_at"]).all()


def test_nothing_is_dated_outside_the_window(sample, events):
    lines = read_text_csv(sample / "transactions.csv")
    assert lines["InvoiceDate"].min() >= "2023-01-01" and lines["InvoiceDate"].max() < "2026-01-01"
    assert (
        events["event_at"].min() >= datetime(2023, 1, 1)
        and events["event_at"].max() < OBSERVATION_END
    )
    customers = read_text_csv(sample / "customers.csv")
    assert customers["UpdatedAt"].max() < "2026-01-01"


def test_event_scores_follow_their_type(sample, events):
    assert set(events["event"]) == {
        "page_view",
        "email_open",
        "email_click",
        "support_ticket",
        "complaint",
        "survey_response",
    }
    surveys = events.filter(pl.col("event") == "survey_response")
    nps, csat = (
        surveys.filter(pl.col("survey") == "nps"),
        surveys.filter(pl.col("survey") == "csat"),
    )
    assert nps["score"].is_between(0, 10).all() and csat["score"].is_between(1, 5).all()
    assert (surveys["score"] == surveys["score"].round()).all() and surveys[
        "survey"
    ].null_count() == 0
    tickets = events.filter(pl.col("event") == "support_ticket")
    assert (tickets["score"] > 0).all()
    assert tickets["score"].mean() > 1.5 * tickets["score"].median()  # right-skewed
    others = events.filter(~pl.col("event").is_in(["survey_response", "support_ticket"]))
    assert others["score"].null_count() == others.height


def test_events_fade_before_a_customer_drops_out(sample, events):
    duplicates = read_text_csv(sample / "truth" / "duplicates.csv")
    truth = truth_customers(sample).filter(pl.col("dropout_at").is_not_null())
    # Customers with a long enough history to compare "before" with "the last 90 days".
    truth = truth.filter(pl.col("dropout_at") - pl.col("first_purchase_at") > pl.duration(days=270))
    assert truth.height > 100
    per_person = (
        events.join(duplicates, left_on="user", right_on="customer_id")
        .join(truth, on="person_id")
        .group_by("person_id")
        .agg(
            late=(pl.col("event_at") > pl.col("dropout_at") - pl.duration(days=90))
            .and_(pl.col("event_at") <= pl.col("dropout_at"))
            .sum(),
            early=(pl.col("event_at") <= pl.col("dropout_at") - pl.duration(days=90))
            .and_(pl.col("event_at") >= pl.col("first_purchase_at"))
            .sum(),
            after=(pl.col("event_at") > pl.col("dropout_at")).sum(),
            early_days=(
                pl.col("dropout_at").first()
                - pl.duration(days=90)
                - pl.col("first_purchase_at").first()
            ).dt.total_seconds()
            / 86400,
            after_days=(pl.lit(OBSERVATION_END) - pl.col("dropout_at").first()).dt.total_seconds()
            / 86400,
        )
    )
    early_rate = (per_person["early"] / per_person["early_days"]).mean()
    late_rate = (per_person["late"] / 90).mean()
    after_rate = (per_person["after"] / per_person["after_days"]).mean()
    assert late_rate < 0.8 * early_rate
    assert after_rate < 0.1 * early_rate


def test_customers_about_to_drop_out_complain_more_and_score_lower(sample, events):
    duplicates = read_text_csv(sample / "truth" / "duplicates.csv")
    truth = truth_customers(sample).filter(~pl.col("is_prospect"))
    labelled = (
        events.join(duplicates, left_on="user", right_on="customer_id")
        .join(truth, on="person_id")
        .with_columns(
            at_risk=pl.col("dropout_at").is_not_null()
            & (pl.col("event_at") > pl.col("dropout_at") - pl.duration(days=60))
        )
    )
    share = (
        labelled.group_by("at_risk")
        .agg(
            complaints=(pl.col("event") == "complaint").mean(),
            nps=pl.col("score").filter(pl.col("survey") == "nps").mean(),
            response_hours=pl.col("score").filter(pl.col("event") == "support_ticket").median(),
        )
        .sort("at_risk")
    )
    calm, risk = share.row(0, named=True), share.row(1, named=True)
    assert risk["complaints"] > 3 * calm["complaints"]
    assert risk["nps"] < calm["nps"] - 1.5
    assert risk["response_hours"] > 2 * calm["response_hours"]


def test_engagement_grows_with_the_purchase_rate_and_prospects_browse_too(sample, events):
    duplicates = read_text_csv(sample / "truth" / "duplicates.csv")
    truth = truth_customers(sample)
    counts = (
        events.join(duplicates, left_on="user", right_on="customer_id")
        .group_by("person_id")
        .agg(n=pl.len())
    )
    both = truth.join(counts, on="person_id", how="left").with_columns(pl.col("n").fill_null(0))
    buyers = both.filter(~pl.col("is_prospect")).sort("lambda_per_day")
    low, high = buyers.head(buyers.height // 4), buyers.tail(buyers.height // 4)
    assert high["n"].mean() > 5 * low["n"].mean()
    prospects = both.filter(pl.col("is_prospect"))
    assert (prospects["n"] > 0).mean() > 0.5
    prospect_events = events.join(duplicates, left_on="user", right_on="customer_id").join(
        prospects, on="person_id"
    )
    assert set(prospect_events["event"]) <= {"page_view", "email_open", "email_click"}
    assert 10 < events.height / 6000 < 20  # ~15 events per buying customer


def test_bgnbd_fit_on_completed_orders_recovers_the_true_parameters(tmp_path):
    from lifetimes import BetaGeoFitter

    generate_sample(tmp_path, customers=8000, seed=2, progress=False)
    orders = completed_orders(tmp_path)
    summary = orders.group_by("person_id").agg(
        frequency=pl.len() - 1,
        recency=(pl.col("order_at").max() - pl.col("order_at").min()).dt.total_seconds() / 86400,
        T=(pl.lit(OBSERVATION_END) - pl.col("order_at").min()).dt.total_seconds() / 86400,
    )
    fitted = (
        BetaGeoFitter()
        .fit(
            summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy()
        )
        .params_
    )
    true = json.loads((tmp_path / "truth" / "params.json").read_text())["bgnbd"]
    # Across seeds, 8000 customers pin r and alpha within ~5% and a, b within ~10%.
    for name, bound in (("r", 0.12), ("alpha", 0.12), ("a", 0.2), ("b", 0.2)):
        assert abs(fitted[name] / true[name] - 1) < bound, (name, fitted[name], true[name])


@pytest.mark.parametrize("customers", [0, -5, 2.5, True])
def test_rejects_a_customer_count_that_is_not_a_positive_integer(tmp_path, customers):
    with pytest.raises(ValueError, match="customers"):
        generate_sample(tmp_path, customers=customers, progress=False)


@pytest.mark.parametrize("customers", [1, 7])
def test_tiny_generations_write_complete_files(tmp_path, customers):
    report = generate_sample(tmp_path, customers=customers, seed=1, progress=False)
    assert report.rows["truth_customers"] == customers + round(customers * 0.1)
    assert read_text_csv(report.paths["customers"]).columns == list(CUSTOMER_COLUMNS)
    assert read_text_csv(report.paths["transactions"]).columns == list(TRANSACTION_COLUMNS)


def test_rejects_an_end_before_the_start(tmp_path):
    with pytest.raises(ValueError, match="end"):
        generate_sample(
            tmp_path, customers=10, start=date(2024, 1, 1), end=date(2023, 1, 1), progress=False
        )
