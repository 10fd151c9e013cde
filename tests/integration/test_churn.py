"""Churn-risk model: SQL features and labels, leakage, model, metrics, fallbacks, artifact."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.exceptions import NotFittedError

from models.churn import (
    BaselineChurnModel,
    ChurnModel,
    assign_churn_bands,
    build_churn_scores,
    choose_published_scorer,
    compute_churn_metrics,
    compute_permutation_importances,
    load_churn_model,
    save_churn_model,
    select_feature_columns,
    stratified_rows,
)
from pipelines.execution.buckets import bucket_of
from pipelines.scoring.churn import (
    _features_at,
    build_churn_features,
    build_churn_labels,
    churn_scores_bucket,
    run_churn,
)

# --------------------------------------------------------------------------- core tables
# Column names and types exactly as in docs/core_tables.md.

CORE_DDL = """
create schema if not exists core;
create table core.transactions (
    customer_id varchar, order_id varchar, order_at timestamp, order_date date,
    amount double, quantity double, status varchar, is_completed_order boolean,
    currency varchar, channel varchar, payment_method varchar, line_count integer
);
create table core.customers (
    customer_id varchar, email varchar, phone varchar, full_name varchar,
    birth_date date, gender varchar, city varchar, country varchar,
    signup_at timestamp, marketing_consent boolean, updated_at timestamp
);
create table core.events (
    customer_id varchar, event_id varchar, event_at timestamp, event_type varchar,
    channel varchar, value double, properties varchar
);
-- one delivered record per customer, every id its own customer: the record versions and
-- the id map the churn features read the profile through
create view core.customer_records as
select customer_id, email, phone, full_name, birth_date, gender, city, country, signup_at,
       marketing_consent, updated_at, timestamp '2000-01-01' as _ingested_at,
       'customers.csv' as _source_file, 'f' as _file_sha256,
       row_number() over (order by customer_id) as _row_number
from core.customers;
create view core.customer_map as
select customer_id as source_customer_id, customer_id, 'self' as match_rule
from core.customers;
"""


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:")
    connection.execute(CORE_DDL)
    yield connection
    connection.close()


def add_orders(con, rows):
    """rows: (customer_id, order_id, order_at 'YYYY-MM-DD HH:MM', amount[, status])."""
    for row in rows:
        customer_id, order_id, order_at, amount, *rest = row
        status = rest[0] if rest else "completed"
        con.execute(
            """
            insert into core.transactions
            select $customer_id, $order_id, cast($order_at as timestamp), cast(cast($order_at as timestamp) as date),
                   $amount, 1.0, $status, $status = 'completed' and $amount > 0, 'EUR', 'web', 'card', 1
            """,
            {
                "customer_id": customer_id,
                "order_id": order_id,
                "order_at": order_at,
                "amount": amount,
                "status": status,
            },
        )


def add_events(con, rows):
    """rows: (customer_id, event_id, event_at, event_type, value, properties)."""
    con.executemany(
        "insert into core.events values (?, ?, cast(? as timestamp), ?, 'web', ?, ?)", rows
    )


def add_customers(con, rows):
    """rows: (customer_id, birth_date, gender, country, marketing_consent, signup_at, updated_at)."""
    con.executemany(
        "insert into core.customers values (?, null, null, null, cast(? as date), ?, null, ?, "
        "cast(? as timestamp), ?, cast(? as timestamp))",
        [
            (c, birth, gender, country, signup, consent, updated)
            for c, birth, gender, country, consent, signup, updated in rows
        ],
    )


def load_core(
    con, transactions: pl.DataFrame, events: pl.DataFrame, customers: pl.DataFrame
) -> None:
    """Append simulated frames to the core tables, casting to the documented types."""
    con.register("transactions_frame", transactions.to_arrow())
    con.register("events_frame", events.to_arrow())
    con.register("customers_frame", customers.to_arrow())
    con.execute(
        """
        insert into core.transactions
        select customer_id, order_id, order_at, cast(order_at as date), amount, 1.0, status,
               status = 'completed' and amount > 0, 'EUR', 'web', 'card', 1
        from transactions_frame;
        insert into core.events
        select customer_id, event_id, event_at, event_type, 'web', value, properties from events_frame;
        insert into core.customers
        select customer_id, null, null, null, birth_date, gender, null, country, signup_at,
               marketing_consent, updated_at
        from customers_frame;
        """
    )
    for name in ("transactions_frame", "events_frame", "customers_frame"):
        con.unregister(name)


# --------------------------------------------------------------------------- simulation


def simulate_core(
    n_customers: int, as_of: date, seed: int, history_days: int = 730, days_after: int = 20
):
    """Simulated shop: customers buy at their own rate until they silently drop out.

    In the weeks before a dropout a customer fades: they buy less and spend less, open
    and click fewer e-mails, browse less, raise more support tickets and complaints
    (with slower answers) and give lower NPS/CSAT. After the dropout they stop buying
    and engagement stays low. Non-churners vary too: purchase rates are heterogeneous
    (a slow buyer often goes 90 days without an order while alive), so recency alone is
    an imperfect signal. Rows run ``days_after`` days past ``as_of``.
    """
    rng = np.random.default_rng(seed)
    start = datetime.combine(as_of, datetime.min.time()) - timedelta(days=history_days)
    n_days = history_days + days_after + 1
    days = np.arange(n_days)[None, :]

    first_day = rng.integers(0, history_days - 30, n_customers)[:, None]
    purchase_rate = rng.gamma(2.0, 1 / 60, n_customers)[:, None]  # orders per day, mean 1/30
    dropout_day = first_day + rng.exponential(700, n_customers)[:, None]
    fade_days = rng.uniform(45, 150, n_customers)[:, None]
    engagement = rng.beta(2, 3, n_customers)[:, None]
    browsing = rng.gamma(1.5, 0.05, n_customers)[:, None]
    spend = rng.lognormal(3.5, 0.5, n_customers)[:, None]

    active = days >= first_day
    alive = active & (days < dropout_day)
    # 1 while healthy, falling to 0.15 at the dropout and staying there.
    vigour = 0.15 + 0.85 * np.clip((dropout_day - days) / fade_days, 0.0, 1.0)
    engagement_level = np.where(alive, vigour, 0.1)

    buys = alive & (rng.random((n_customers, n_days)) < purchase_rate * vigour)
    buys[np.arange(n_customers), first_day.ravel()] = True
    c, d = np.nonzero(buys)
    status = rng.choice(["completed", "returned", "cancelled"], size=len(c), p=[0.94, 0.04, 0.02])
    amount = np.round(spend[c, 0] * (0.6 + 0.4 * vigour[c, d]) * rng.lognormal(0, 0.3, len(c)), 2)
    amount = np.where(status == "returned", -amount, amount)
    transactions = pl.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in c],
            "order_id": [f"O{k:07d}" for k in range(len(c))],
            "order_at": [
                start + timedelta(days=int(x), seconds=int(s))
                for x, s in zip(d, rng.integers(0, 86400, len(c)))
            ],
            "amount": amount,
            "status": status,
        }
    )

    event_parts = []

    def add(kind, mask_or_counts, value=None, properties=None):
        cc, dd = np.nonzero(mask_or_counts)
        counts = np.asarray(mask_or_counts)[cc, dd].astype(int)
        cc, dd = np.repeat(cc, counts), np.repeat(dd, counts)
        event_parts.append(
            pl.DataFrame(
                {
                    "customer_id": [f"C{i:05d}" for i in cc],
                    "event_at": [
                        start + timedelta(days=int(x), seconds=int(s))
                        for x, s in zip(dd, rng.integers(0, 86400, len(cc)))
                    ],
                    "event_type": kind,
                    "value": value(cc, dd) if value else np.full(len(cc), np.nan),
                    "properties": properties,
                },
                schema_overrides={"properties": pl.String},
            )
        )

    weekly_mail = active & ((days + first_day) % 7 == 0)
    opens = weekly_mail & (rng.random((n_customers, n_days)) < engagement * engagement_level)
    clicks = opens & (rng.random((n_customers, n_days)) < 0.25 + 0.25 * engagement_level)
    add("email_open", opens)
    add("email_click", clicks)
    add("page_view", active * rng.poisson(browsing * engagement_level))
    tickets = alive * rng.poisson(0.003 + 0.012 * (1 - vigour))
    add(
        "support_ticket",
        tickets,
        value=lambda cc, dd: np.round(rng.gamma(2.0, 4.0 + 20.0 * (1 - vigour[cc, dd])), 1),
    )
    add("complaint", alive * rng.poisson(0.0005 + 0.006 * (1 - vigour)))
    surveyed = buys & (rng.random((n_customers, n_days)) < 0.25)
    add(
        "survey_response",
        surveyed,
        value=lambda cc, dd: np.clip(
            np.round(8.0 - 6.0 * (1 - vigour[cc, dd]) + rng.normal(0, 1.5, len(cc))), 0, 10
        ),
        properties='{"survey": "nps"}',
    )
    rated = (tickets > 0) & (rng.random((n_customers, n_days)) < 0.5)
    add(
        "survey_response",
        rated,
        value=lambda cc, dd: np.clip(
            np.round(4.2 - 2.5 * (1 - vigour[cc, dd]) + rng.normal(0, 0.7, len(cc))), 1, 5
        ),
        properties='{"survey": "csat"}',
    )
    events = pl.concat(event_parts).with_columns(
        event_id=pl.format("E{}", pl.int_range(pl.len())), value=pl.col("value").fill_nan(None)
    )

    first = first_day.ravel()
    customers = pl.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n_customers)],
            "birth_date": [
                None if rng.random() < 0.2 else date(1950, 1, 1) + timedelta(days=int(x))
                for x in rng.integers(0, 365 * 55, n_customers)
            ],
            "gender": rng.choice(["f", "m", "x", None], n_customers, p=[0.45, 0.42, 0.03, 0.1]),
            "country": rng.choice(
                ["DE", "FR", "NL", "AT", "PL", None],
                n_customers,
                p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05],
            ),
            "marketing_consent": rng.random(n_customers) < 0.7,
            "signup_at": [start + timedelta(days=int(x) - 3) for x in first],
            # Most profiles were last edited at signup, some later (even after as_of).
            "updated_at": [
                start
                + timedelta(
                    days=int(x) + (int(rng.integers(0, n_days - x)) if rng.random() < 0.3 else 0)
                )
                for x in first
            ],
        }
    )
    return transactions, events, customers


@pytest.fixture(scope="module")
def simulated():
    as_of = date(2024, 12, 31)
    return as_of, simulate_core(3000, as_of, seed=7)


def simulated_con(simulated_frames) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    connection.execute(CORE_DDL)
    load_core(connection, *simulated_frames)
    return connection


@pytest.fixture(scope="module")
def simulated_run(simulated):
    as_of, frames = simulated
    connection = simulated_con(frames)
    started = time.perf_counter()
    result = run_churn(connection, as_of, horizon_days=90, seed=0)
    seconds = time.perf_counter() - started
    yield result, connection, seconds
    connection.close()


def add_regular_buyers(con, customer_ids, first: date, last: date, every_days: int):
    """Each customer orders every ``every_days`` days from ``first`` to ``last``."""
    rows = []
    for customer_id in customer_ids:
        day, k = first, 0
        while day <= last:
            rows.append((customer_id, f"{customer_id}-{k}", f"{day} 12:00", 20.0))
            day, k = day + timedelta(days=every_days), k + 1
    con.executemany(
        """
        insert into core.transactions
        select ?, ?, cast(? as timestamp), cast(cast(? as timestamp) as date), ?, 1.0,
               'completed', true, 'EUR', 'web', 'card', 1
        """,
        [(c, o, at, at, amount) for c, o, at, amount in rows],
    )


def constant_bgnbd_scorer(p_no_purchase: float):
    """A stand-in BG/NBD model: every customer with an order by the cutoff gets
    p_no_purchase (and p_alive 0.8)."""
    calls = []

    def score(cutoff: date) -> pl.DataFrame:
        calls.append(cutoff)
        return pl.DataFrame(
            {
                "customer_id": ["late-1", "late-2", "late-3"],
                "p_alive": [0.8] * 3,
                "expected_purchases": [0.5] * 3,
                "p_no_purchase": [p_no_purchase] * 3,
            }
        )

    score.calls = calls
    return score


# --------------------------------------------------------------------------- labels


def test_labels_count_orders_up_to_the_last_day_of_the_horizon(con):
    cutoff = date(2024, 3, 31)
    add_orders(
        con,
        [
            # bought late on the cutoff day and not again: history, then churned
            ("on_cutoff", "o1", "2024-03-31 23:59", 10.0),
            # bought on the last day of the horizon (cutoff + 30): retained
            ("last_day", "o2", "2024-01-05 10:00", 10.0),
            ("last_day", "o3", "2024-04-30 00:00", 10.0),
            # next order one day after the horizon: churned
            ("day_after", "o4", "2024-01-05 10:00", 10.0),
            ("day_after", "o5", "2024-05-01 00:00", 10.0),
            # only a cancelled order and a return in the horizon: churned
            ("not_completed", "o6", "2024-02-01 10:00", 10.0),
            ("not_completed", "o7", "2024-04-10 10:00", 10.0, "cancelled"),
            ("not_completed", "o8", "2024-04-11 10:00", -10.0, "returned"),
            # first order after the cutoff: not labelled
            ("new", "o9", "2024-04-01 00:00", 10.0),
            # nothing completed by the cutoff: not labelled
            ("refunded_only", "o10", "2024-03-01 10:00", 10.0, "refunded"),
            ("refunded_only", "o11", "2024-04-02 10:00", 10.0),
        ],
    )
    labels = build_churn_labels(con, cutoff, 30)
    assert labels.columns == [
        "customer_id",
        "is_churned",
        "horizon_days",
        "cutoff_date",
        "horizon_end_date",
    ]
    assert dict(labels.select("customer_id", "is_churned").iter_rows()) == {
        "day_after": True,
        "last_day": False,
        "not_completed": True,
        "on_cutoff": True,
    }
    assert labels["cutoff_date"].unique().to_list() == [cutoff]
    assert labels["horizon_end_date"].unique().to_list() == [date(2024, 4, 30)]
    assert con.execute("select count(*) from models.churn_labels").fetchall() == [(4,)]


def test_labels_are_empty_before_the_first_order(con):
    add_orders(con, [("a", "o1", "2024-03-01 10:00", 10.0)])
    assert build_churn_labels(con, date(2024, 2, 29), 90).is_empty()


def test_labels_refuse_a_horizon_that_is_not_a_positive_number_of_days(con):
    with pytest.raises(ValueError, match="horizon_days"):
        build_churn_labels(con, date(2024, 3, 31), 0)


# --------------------------------------------------------------------------- features


def test_features_summarise_orders_events_and_profile_at_the_cutoff(con):
    cutoff = date(2024, 12, 31)
    add_orders(
        con,
        [
            ("a", "o1", "2024-01-01 10:00", 100.0),
            ("a", "o2", "2024-07-05 10:00", 40.0),  # first day of the last 180
            ("a", "o3", "2024-10-03 10:00", 60.0),  # first day of the last 90
            ("a", "o4", "2024-12-02 10:00", 20.0),  # first day of the last 30
            ("a", "o5", "2024-12-03 10:00", -20.0, "returned"),
            ("b", "o6", "2024-12-31 23:00", 50.0),
        ],
    )
    add_events(
        con,
        [
            ("a", "e1", "2024-12-30 08:00", "email_open", None, None),
            ("a", "e2", "2024-12-30 08:05", "email_click", None, None),
            ("a", "e3", "2024-10-02 08:00", "email_open", None, None),  # a day before the last 90
            ("a", "e4", "2024-07-04 09:00", "page_view", None, None),  # a day before the last 180
            ("a", "e5", "2024-12-20 09:00", "support_ticket", 10.0, None),
            ("a", "e6", "2024-06-01 09:00", "support_ticket", 30.0, None),
            ("a", "e7", "2024-12-21 09:00", "complaint", None, None),
            ("a", "e8", "2024-05-01 09:00", "survey_response", 9.0, '{"survey": "nps"}'),
            ("a", "e9", "2024-12-22 09:00", "survey_response", 3.0, '{"survey": "nps"}'),
            ("a", "e10", "2024-12-23 09:00", "survey_response", 4.0, '{"survey": "csat"}'),
            ("nobody", "e11", "2024-12-23 09:00", "page_view", None, None),
        ],
    )
    add_customers(
        con, [("a", "1990-06-15", "f", "DE", True, "2023-12-20 10:00", "2024-02-01 10:00")]
    )

    features = build_churn_features(con, cutoff)
    assert features["customer_id"].to_list() == ["a", "b"]
    a, b = features.iter_rows(named=True)
    expected_a = {
        "days_since_last_order": 29,
        "days_since_first_order": 365,
        "order_count": 4,
        "revenue_total": 220.0,
        "order_value_mean": 55.0,
        "orders_last_30d": 1,
        "orders_last_90d": 2,
        "orders_last_180d": 3,
        "revenue_last_90d": 80.0,
        "revenue_last_180d": 120.0,
        "return_refund_share": 0.2,
        "email_open_events_last_30d": 1,
        "email_open_events_last_90d": 1,
        "email_open_events_last_180d": 2,
        "email_click_events_last_30d": 1,
        "page_view_events_last_30d": 0,
        "page_view_events_last_180d": 0,
        "support_ticket_events_last_30d": 1,
        "support_ticket_events_last_180d": 1,
        "complaint_events_last_30d": 1,
        "survey_response_events_last_180d": 2,
        "days_since_last_event": 1,
        "email_click_to_open_rate": 0.5,
        "complaint_count": 1,
        "support_ticket_count": 2,
        "support_response_hours_mean": 20.0,
        "support_response_hours_last": 10.0,
        "nps_last": 3.0,
        "csat_last": 4.0,
        "age_years": 34,
        "country": "DE",
        "gender": "f",
        "marketing_consent": True,
        "cutoff_date": cutoff,
    }
    assert {key: a[key] for key in expected_a} == expected_a
    gaps = [186.0, 90.0, 60.0]
    assert a["gap_mean_days"] == pytest.approx(np.mean(gaps))
    assert a["gap_std_days"] == pytest.approx(np.std(gaps, ddof=1))
    assert a["recency_gap_ratio"] == pytest.approx(29 / np.mean(gaps))
    # 80 in the last 90 days vs 140 over the 275 days before them
    assert a["spend_trend_90d"] == pytest.approx((80 / 90) / (140 / 275))
    assert a["spend_trend_180d"] == pytest.approx((120 / 180) / (100 / 185))

    # A one-order customer without events or profile: zeros where counted, NULL where undefined.
    assert b["days_since_last_order"] == 0 and b["order_count"] == 1
    assert (
        b["gap_mean_days"] is None
        and b["recency_gap_ratio"] is None
        and b["spend_trend_90d"] is None
    )
    assert b["email_open_events_last_30d"] == 0 and b["complaint_count"] == 0
    assert (
        b["days_since_last_event"] is None
        and b["email_click_to_open_rate"] is None
        and b["nps_last"] is None
    )
    assert b["age_years"] is None and b["country"] is None and b["marketing_consent"] is None


def test_features_ignore_orders_events_and_profile_updates_after_the_cutoff(con):
    cutoff = date(2024, 6, 30)
    add_orders(con, [("a", "o1", "2024-01-10 10:00", 30.0), ("a", "o2", "2024-05-10 10:00", 50.0)])
    add_events(
        con,
        [
            ("a", "e1", "2024-06-30 23:59", "email_open", None, None),
            ("a", "e2", "2024-06-01 10:00", "survey_response", 8.0, '{"survey": "nps"}'),
        ],
    )
    add_customers(
        con, [("a", "1980-01-01", "m", "FR", True, "2024-01-01 00:00", "2024-01-01 00:00")]
    )
    before = build_churn_features(con, cutoff)

    # Everything below is dated after the cutoff, from one second after midnight on.
    add_orders(
        con,
        [
            ("a", "o3", "2024-07-01 00:00", 500.0),
            ("a", "o4", "2024-08-01 10:00", 20.0, "returned"),
            ("new", "o5", "2024-07-02 10:00", 20.0),
        ],
    )
    add_events(
        con,
        [
            ("a", "e3", "2024-07-01 00:00", "complaint", None, None),
            ("a", "e4", "2024-07-02 10:00", "survey_response", 0.0, '{"survey": "nps"}'),
            ("a", "e5", "2024-07-03 10:00", "support_ticket", 99.0, None),
            ("a", "e6", "2024-07-03 10:00", "email_click", None, None),
        ],
    )
    # A newer version of the profile (changed country, consent and birth date)
    add_customers(
        con, [("a", "1999-09-09", "x", "PL", False, "2024-01-01 00:00", "2024-07-01 00:00")]
    )
    after = build_churn_features(con, cutoff)
    assert after.equals(before)
    assert before["country"].to_list() == ["FR"]


def test_features_treat_a_profile_written_after_the_cutoff_as_unknown(con):
    add_orders(con, [("a", "o1", "2024-01-10 10:00", 30.0)])
    add_customers(
        con, [("a", "1980-01-01", "m", "FR", True, "2024-01-01 00:00", "2024-08-01 00:00")]
    )
    features = build_churn_features(con, date(2024, 6, 30))
    assert features.select("age_years", "country", "gender", "marketing_consent").row(0) == (
        None,
        None,
        None,
        None,
    )
    assert build_churn_features(con, date(2024, 8, 1))["country"].to_list() == ["FR"]


def test_features_equal_those_from_data_cut_at_the_cutoff(simulated):
    """No leakage on a whole simulated shop: the features at a cutoff are the same whether
    or not the tables hold the months after it."""
    as_of, (transactions, events, customers) = simulated
    cutoff = as_of - timedelta(days=90)
    end_of_cutoff = datetime.combine(cutoff + timedelta(days=1), datetime.min.time())
    full = simulated_con((transactions, events, customers))
    cut = simulated_con(
        (
            transactions.filter(pl.col("order_at") < end_of_cutoff),
            events.filter(pl.col("event_at") < end_of_cutoff),
            customers.filter(pl.col("updated_at") < end_of_cutoff),
        )
    )
    from_full = build_churn_features(full, cutoff)
    from_cut = build_churn_features(cut, cutoff)
    assert from_full.height > 1000
    assert from_full.equals(from_cut)
    # The run reads the validation cutoffs from the macro, without storing them: same rows.
    build_churn_features(full, as_of)
    assert _features_at(full, cutoff).equals(from_cut)
    assert full.execute("select distinct cutoff_date from models.churn_features").fetchall() == [
        (as_of,)
    ]
    full.close()
    cut.close()


def test_features_name_missing_core_tables():
    connection = duckdb.connect(":memory:")
    connection.execute("create schema core")
    with pytest.raises(ValueError, match="core.transactions, core.customers, core.events"):
        build_churn_features(connection, date(2024, 1, 1))
    connection.close()


# --------------------------------------------------------------------------- model


def tiny_training_frame(n: int = 200, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 300, n)
    X = pl.DataFrame(
        {
            "days_since_last_order": recency,
            "order_count": rng.integers(1, 20, n),
            "nps_last": [
                None if gap else int(score)
                for gap, score in zip(rng.random(n) < 0.3, rng.integers(0, 11, n))
            ],
            "country": rng.choice(["DE", "FR", "NL"], n).tolist(),
            "marketing_consent": (rng.random(n) < 0.5).tolist(),
        }
    )
    y = (recency + rng.normal(0, 60, n) > 150).astype(int)
    return X, y


def test_predict_before_fit_raises_not_fitted_error():
    X, _ = tiny_training_frame()
    with pytest.raises(NotFittedError):
        ChurnModel().predict_proba(X)
    with pytest.raises(NotFittedError):
        BaselineChurnModel("recency").predict_proba(X)


def test_model_keeps_hyperparameters_and_refuses_a_single_class():
    X, y = tiny_training_frame()
    model = ChurnModel(learning_rate=0.2, random_state=3)
    assert model.get_params()["learning_rate"] == 0.2 and model.get_params()["random_state"] == 3
    with pytest.raises(ValueError, match="at least 2 churned and 2 retained"):
        model.fit(X, np.zeros(len(y), dtype=int))
    assert not hasattr(model, "pipeline_")


def test_model_gives_reproducible_probabilities_and_handles_unseen_categories():
    X, y = tiny_training_frame()
    first = ChurnModel(random_state=1).fit(X, y)
    second = ChurnModel(random_state=1).fit(X, y)
    p = first.predict_proba(X)
    assert p.shape == (len(y), 2) and np.all((p >= 0) & (p <= 1))
    assert np.array_equal(p, second.predict_proba(X))
    assert first.calibration_method_ == "sigmoid"  # 200 customers: too few for isotonic
    unseen = X.with_columns(
        pl.lit("JP").alias("country"), pl.lit(None, dtype=pl.Boolean).alias("marketing_consent")
    )
    assert np.isfinite(first.predict_proba(unseen)).all()


def test_model_scores_and_explains_in_chunks_exactly_as_in_one_piece(monkeypatch):
    import models.churn.model as churn_model

    X, y = tiny_training_frame()
    model = ChurnModel(random_state=1).fit(X, y)
    probabilities = model.predict_proba(X)
    contributions = model.reason_contributions(X)
    monkeypatch.setattr(churn_model, "PREDICT_CHUNK_ROWS", 7)  # 200 rows: 29 chunks
    assert np.array_equal(model.predict_proba(X), probabilities)
    assert np.array_equal(model.predict_proba(X.to_pandas()), probabilities)
    chunked = model.reason_contributions(X)
    assert chunked.keys() == contributions.keys() and len(chunked) > 3
    for group, values in contributions.items():
        assert np.array_equal(chunked[group], values), group


def test_model_sets_aside_features_that_almost_nobody_has():
    X, y = tiny_training_frame()
    X = X.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(
            "csat_last"
        ),  # all missing breaks the boosting's binning
        pl.lit(None, dtype=pl.String).alias("gender"),
        pl.Series("age_years", [30.0] * 5 + [None] * (len(y) - 5)),  # fewer than a leaf
    )
    model = ChurnModel().fit(X, y)
    assert model.unused_features_ == ["csat_last", "gender", "age_years"]
    assert np.isfinite(model.predict_proba(X)).all()
    importances = compute_permutation_importances(model, X, y)
    assert set(importances["feature"]) == set(X.columns)
    unused = importances.filter(pl.col("feature").is_in(model.unused_features_))
    assert unused["importance_mean"].to_list() == [0.0, 0.0, 0.0]


def test_model_calibrates_on_a_held_out_share_of_a_large_training_set():
    X, y = tiny_training_frame(n=3000, seed=4)
    small = ChurnModel(random_state=2).fit(X, y)
    assert small.calibration_cv_ == "5-fold" and small.calibration_method_ == "sigmoid"
    large = ChurnModel(random_state=2, holdout_min_customers=1000).fit(X, y)
    again = ChurnModel(random_state=2, holdout_min_customers=1000).fit(X, y)
    assert large.calibration_cv_ == "holdout"
    assert large.calibration_method_ == "sigmoid"  # 600 held out: too few for isotonic
    p = large.predict_proba(X)[:, 1]
    assert np.array_equal(p, again.predict_proba(X)[:, 1])
    assert abs(p.mean() - y.mean()) < 0.02  # calibrated to the base rate
    assert (
        ChurnModel(holdout_min_customers=1000, calibration_share=0.5).fit(X, y).calibration_method_
        == "isotonic"
    )


def test_model_fits_on_a_stratified_sample_when_there_are_more_customers_than_the_cap():
    X, y = tiny_training_frame(n=2000, seed=5)
    capped = ChurnModel(random_state=1, max_train_customers=500).fit(X, y)
    assert capped.n_train_customers_ == 500
    assert ChurnModel(random_state=1).fit(X, y).n_train_customers_ == 2000
    again = ChurnModel(random_state=1, max_train_customers=500).fit(X.to_pandas(), y)
    assert np.array_equal(capped.predict_proba(X), again.predict_proba(X))
    # the sample keeps the churn share: same sample as scikit-learn's stratified split
    from sklearn.model_selection import train_test_split

    keep = np.sort(train_test_split(np.arange(2000), train_size=500, stratify=y, random_state=1)[0])
    assert abs(y[keep].mean() - y.mean()) < 1 / 500
    refit = ChurnModel(random_state=1, max_train_customers=None).fit(X[keep], y[keep])
    assert np.array_equal(capped.predict_proba(X), refit.predict_proba(X))
    # the rows the churn step fetches from its frames in DuckDB to fit without the rest
    assert np.array_equal(capped.sample_rows(y), keep)
    assert ChurnModel(max_train_customers=None).sample_rows(y) is None


def test_permutation_importances_on_a_seeded_sample_of_the_test_set():
    X, y = tiny_training_frame(n=600, seed=6)
    model = ChurnModel().fit(X, y)
    first = compute_permutation_importances(model, X, y, max_customers=300, random_state=3)
    again = compute_permutation_importances(model, X, y, max_customers=300, random_state=3)
    assert first.equals(again)
    assert set(first["feature"]) == set(X.columns)
    assert first["feature"][0] == "days_since_last_order"
    everyone = compute_permutation_importances(model, X, y, max_customers=None, random_state=3)
    assert not everyone.equals(first)
    # given only the rows it would sample (what the churn step fetches), the same values
    keep = stratified_rows(y, 300, 3)
    assert len(keep) == 300 and stratified_rows(y, 600, 3) is None
    sampled = compute_permutation_importances(
        model, X[keep], y[keep], max_customers=300, random_state=3
    )
    assert sampled.equals(first)


def test_saved_model_refuses_frames_with_other_features(tmp_path):
    X, y = tiny_training_frame()
    model = ChurnModel().fit(X, y)
    path = tmp_path / "churn_model.pkl"
    save_churn_model(model, path)
    loaded = load_churn_model(path)
    assert loaded.versions_.keys() == {"sklearn", "numpy", "pandas"}
    # Same features in another order: scored as before.
    reordered = X.select(list(reversed(X.columns)))
    assert np.array_equal(loaded.predict_proba(reordered), model.predict_proba(X))

    changed = X.drop("nps_last").with_columns(pl.lit(1.0).alias("csat_last"))
    with pytest.raises(ValueError, match="missing nps_last; unexpected csat_last"):
        loaded.predict_proba(changed)


def test_load_refuses_a_model_saved_with_another_scikit_learn(tmp_path):
    import pickle

    X, y = tiny_training_frame()
    path = tmp_path / "churn_model.pkl"
    save_churn_model(ChurnModel().fit(X, y), path)
    with open(path, "rb") as handle:
        header = pickle.load(handle)
        body = handle.read()
    header["versions"]["sklearn"] = "0.0.1"
    with open(path, "wb") as handle:
        pickle.dump(header, handle)
        handle.write(body)
    with pytest.raises(ValueError, match="saved with scikit-learn 0.0.1"):
        load_churn_model(path)


def test_band_cut_offs_are_inclusive_at_the_upper_band_and_configurable():
    probabilities = [0.0, 0.329, 0.33, 0.659, 0.66, 1.0]
    assert assign_churn_bands(probabilities).to_list() == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    assert assign_churn_bands(probabilities, (0.5, 0.9)).to_list() == [
        "low",
        "low",
        "low",
        "medium",
        "medium",
        "high",
    ]
    scores = build_churn_scores(["00042", "b"], [0.1, 0.8], (0.2, 0.7))
    assert scores.columns == ["customer_id", "churn_probability", "churn_band", "churn_reasons"]
    assert scores.rows() == [("00042", 0.1, "low", None), ("b", 0.8, "high", None)]
    for bad in [(0.7, 0.3), (-0.1, 0.5), (0.3, 1.5), (0.5, 0.5)]:
        with pytest.raises(ValueError, match="band cut-offs"):
            assign_churn_bands(probabilities, bad)


# --------------------------------------------------------------------------- metrics


def test_metrics_share_tied_scores_at_the_top_decile_boundary():
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0] * 2)
    model_p = np.linspace(0.95, 0.05, 20)  # ranks the first two customers on top
    recency = np.array([300, 300, 300, 300, 10, 10, 10, 10, 10, 10] * 2)  # 8 tied at the top
    metrics = compute_churn_metrics(
        y, model_p, {"recency": (recency, np.where(recency > 100, 0.5, 0.2))}
    )
    assert metrics.columns == ["model", "metric", "value", "baseline"]
    assert metrics.schema["baseline"] == pl.Float64  # as in models.model_metrics
    assert metrics["model"].unique().sort().to_list() == ["churn", "churn_vs_recency"]
    row = {r["metric"]: (r["value"], r["baseline"]) for r in metrics.iter_rows(named=True)}
    # Model: top 2 of 20 are both churners; base rate 6/20. Recency: 2 places shared by
    # 8 tied customers, 4 of them churners -> 1 churner expected.
    assert row["top_decile_lift"] == pytest.approx((1 / 0.3, 0.5 / 0.3))
    assert row["top_decile_capture_rate"] == pytest.approx((2 / 6, 1 / 6))
    assert row["n_customers"] == (20, None) and row["churn_rate"][0] == pytest.approx(0.3)
    assert row["calibration_bin_10_predicted"][0] == pytest.approx(np.mean(np.sort(model_p)[-2:]))
    assert row["calibration_bin_10_observed"][0] == 1.0
    assert row["calibration_bin_10_predicted"][1] == pytest.approx(0.5)
    assert row["calibration_bin_1_predicted"][1] == pytest.approx(0.2)
    for metric in ("roc_auc", "pr_auc", "brier_score", "log_loss"):
        assert all(np.isfinite(row[metric]))
    assert row["brier_score"][1] == pytest.approx(
        np.mean((np.where(recency > 100, 0.5, 0.2) - y) ** 2)
    )


def test_metrics_without_baselines_describe_the_model_alone():
    y = np.array([0, 1, 0, 1])
    metrics = compute_churn_metrics(y, [0.1, 0.9, 0.2, 0.8], n_bins=2)
    assert (
        metrics["model"].unique().to_list() == ["churn"]
        and metrics["baseline"].null_count() == metrics.height
    )
    assert choose_published_scorer(metrics)[:2] == ("model", True)


def test_baseline_is_published_when_the_model_does_not_beat_it():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])
    recency = np.array([1, 2, 30, 40, 3, 50, 4, 60, 70, 5])  # perfect ranking
    noisy = np.array([0.2, 0.7, 0.6, 0.9, 0.1, 0.3, 0.4, 0.8, 0.5, 0.6])
    p_none = noisy[::-1]
    metrics = compute_churn_metrics(
        y, noisy, {"recency": (recency, recency / 100), "p_no_purchase": (p_none, p_none)}
    )
    scorer, beats, message = choose_published_scorer(metrics)
    assert (scorer, beats) == ("recency", False)
    assert message.startswith(
        "The churn model does not beat the best baseline (recency) on test ROC AUC by a "
        "significant margin (0.740 vs 1.000, -0.260, 95% interval "
    )
    assert message.endswith("so the published scores are the recency baseline's.")

    # on ten customers a perfect ranking against 0.740 is no significant margin ...
    close = compute_churn_metrics(y, recency / 100, {"recency": (noisy, noisy)})
    assert choose_published_scorer(close)[:2] == ("recency", False)
    # ... on 400 customers it is
    many = np.tile(np.arange(10), 40)
    good = compute_churn_metrics(
        np.tile(y, 40),
        np.tile(recency / 100, 40) + many * 1e-6,
        {"recency": (np.tile(noisy, 40),) * 2},
    )
    scorer, beats, message = choose_published_scorer(good)
    assert (scorer, beats) == ("model", True) and "beats the best baseline (recency)" in message


# --------------------------------------------------------------------------- the run


def test_model_beats_the_recency_baseline_on_simulated_fading_churners(simulated, simulated_run):
    as_of, (transactions, _, _) = simulated
    result, connection, seconds = simulated_run
    model_auc, recency_auc = result.metrics.filter(pl.col("metric") == "roc_auc").row(0)[2:]
    print(
        f"churn run: {seconds:.1f} s, test ROC AUC model {model_auc:.3f} vs recency {recency_auc:.3f}"
    )
    assert result.fallback_reason is None
    assert result.published_scorer == "model" and result.model_beats_baselines is True
    assert model_auc > recency_auc + 0.01
    assert isinstance(result.model, ChurnModel)
    # the refit keeps the weighting the validated model settled on instead of deciding again
    assert result.model.get_params()["class_weight"] in (None, "balanced")
    assert result.model.class_weight_ == result.model.get_params()["class_weight"]
    assert (result.train_cutoff, result.test_cutoff) == (date(2024, 7, 4), date(2024, 10, 2))

    # Everyone with a completed order by as_of is scored once, nobody else.
    buyers = (
        transactions.filter(
            (pl.col("status") == "completed") & (pl.col("order_at").dt.date() <= as_of)
        )["customer_id"]
        .unique()
        .sort()
    )
    scores = result.scores
    assert scores.columns == ["customer_id", "churn_probability", "churn_band", "churn_reasons"]
    # the model is published here: every high-band customer has reasons, the low band none
    high = scores.filter(pl.col("churn_band") == "high")
    assert high.height and high["churn_reasons"].null_count() == 0
    assert scores.filter(pl.col("churn_band") == "low")["churn_reasons"].is_null().all()
    assert scores["customer_id"].sort().equals(buyers)
    assert scores["churn_probability"].is_between(0, 1).all()
    assert set(scores["churn_band"].unique()) == {"low", "medium", "high"}

    importances = result.importances
    assert importances.columns == ["feature", "importance_mean", "importance_std"]
    assert set(importances["feature"]) == set(result.model.feature_names_in_)
    assert importances["feature"][0] == "days_since_last_order"

    # Side effects the caller relies on: features at as_of, labels at the latest labelled cutoff.
    assert connection.execute(
        "select distinct cutoff_date from models.churn_features"
    ).fetchall() == [(as_of,)]
    assert connection.execute(
        "select distinct cutoff_date from models.churn_labels"
    ).fetchall() == [(result.test_cutoff,)]


def test_simulated_run_metrics_are_well_formed(simulated_run):
    result, _, _ = simulated_run
    metrics = result.metrics
    assert metrics["model"].unique().sort().to_list() == [
        "churn",
        "churn_verdict",
        "churn_vs_recency",
    ]
    assert metrics.filter(pl.col("metric").str.starts_with("calibration_bin_")).height == 2 * 10
    rows = {
        r["metric"]: (r["value"], r["baseline"])
        for r in metrics.filter(pl.col("model") == "churn_vs_recency").iter_rows(named=True)
    }
    # Calibrated: every decile's mean probability within 0.1 of its observed churn rate.
    for number in range(1, 11):
        predicted = rows[f"calibration_bin_{number}_predicted"][0]
        observed = rows[f"calibration_bin_{number}_observed"][0]
        assert abs(predicted - observed) < 0.1, number
    assert 0 < rows["brier_score"][0] < rows["brier_score"][1] < 0.25
    assert rows["log_loss"][0] < rows["log_loss"][1]


def test_run_falls_back_to_recency_when_too_few_customers_are_labelled(con):
    add_regular_buyers(con, [f"c{i}" for i in range(30)], date(2023, 1, 1), date(2024, 6, 30), 45)
    add_regular_buyers(con, [f"d{i}" for i in range(30)], date(2023, 1, 1), date(2024, 12, 31), 45)
    result = run_churn(con, date(2024, 12, 31), 90, min_labelled=200)
    assert result.fallback_reason.startswith(
        "Too few labelled customers at the training cutoff 2024-07-04: 60"
    )
    assert "recency percentiles" in result.fallback_reason
    assert result.published_scorer == "fallback_recency_rank" and result.model is None
    assert result.metrics.is_empty() and result.importances.is_empty()
    assert result.scores.height == 60
    scores = dict(result.scores.select("customer_id", "churn_probability").iter_rows())
    assert scores["c0"] > scores["d0"]  # the lapsed buyers rank riskier


def test_run_falls_back_when_labels_have_only_one_class(con):
    add_regular_buyers(con, [f"c{i}" for i in range(40)], date(2023, 1, 1), date(2025, 3, 1), 30)
    result = run_churn(con, date(2024, 12, 31), 90, min_labelled=10)
    assert result.fallback_reason.startswith(
        "Only one class at the training cutoff 2024-07-04: all 40 labelled customers bought again"
    )
    assert result.scores.height == 40 and result.model is None


def test_run_falls_back_to_p_no_purchase_when_history_is_shorter_than_two_horizons(con):
    add_regular_buyers(con, ["late-1", "late-2", "late-3"], date(2024, 8, 1), date(2024, 12, 1), 20)
    scorer = constant_bgnbd_scorer(p_no_purchase=0.2)
    result = run_churn(con, date(2024, 12, 31), 90, bgnbd_scorer=scorer)
    assert result.fallback_reason.startswith(
        "History too short for out-of-time validation: the first completed order is on 2024-08-01"
    )
    assert "the customer-base model's P(no purchase in the horizon)" in result.fallback_reason
    assert result.published_scorer == "fallback_p_no_purchase"
    assert result.scores["churn_probability"].to_list() == pytest.approx([0.2, 0.2, 0.2])
    assert result.scores["churn_band"].to_list() == ["low"] * 3
    assert scorer.calls == [date(2024, 12, 31)]  # only at as_of: nothing to validate


def test_run_scores_nobody_without_completed_orders(con):
    result = run_churn(con, date(2024, 12, 31), 90)
    assert result.scores.is_empty() and result.scores.columns == [
        "customer_id",
        "churn_probability",
        "churn_band",
        "churn_reasons",
    ]
    assert "nothing to score" in result.fallback_reason


def test_run_fits_a_model_from_transactions_alone():
    """Only the transactions source is required: no events, no profiles; and a BG/NBD
    scorer whose fit failed at a cutoff (an empty frame) only costs that baseline."""
    as_of = date(2024, 12, 31)
    transactions, events, customers = simulate_core(800, as_of, seed=5)
    connection = duckdb.connect(":memory:")
    connection.execute(CORE_DDL)
    load_core(connection, transactions, events.clear(), customers.clear())

    def failing_before_as_of(cutoff: date) -> pl.DataFrame:
        ids = [] if cutoff < as_of else transactions["customer_id"].unique().to_list()
        return pl.DataFrame(
            {
                "customer_id": ids,
                "p_alive": [0.5] * len(ids),
                "expected_purchases": [1.0] * len(ids),
                "p_no_purchase": [0.5] * len(ids),
            },
            schema={
                "customer_id": pl.String,
                "p_alive": pl.Float64,
                "expected_purchases": pl.Float64,
                "p_no_purchase": pl.Float64,
            },
        )

    result = run_churn(connection, as_of, 90, bgnbd_scorer=failing_before_as_of, min_labelled=100)
    connection.close()
    assert result.fallback_reason is None
    assert result.metrics["model"].unique().sort().to_list() == [
        "churn",
        "churn_verdict",
        "churn_vs_recency",
    ]
    assert result.published_scorer in ("model", "recency")
    assert result.scores["churn_probability"].is_between(0, 1).all()
    no_data = result.importances.filter(
        pl.col("feature").is_in(["nps_last", "country", "page_view_events_last_30d"])
    )
    assert no_data["importance_mean"].to_list() == [0.0, 0.0, 0.0]


def make_bgnbd_scorer(con, horizon_days: int):
    """BG/NBD from lifetimes, refit at each cutoff on the orders up to it (days)."""
    from lifetimes import BetaGeoFitter

    calls = []

    def score(cutoff: date) -> pl.DataFrame:
        calls.append(cutoff)
        summary = con.sql(
            """
            select customer_id,
                   count(distinct order_date) - 1 as frequency,
                   date_diff('day', min(order_date), max(order_date)) as recency,
                   date_diff('day', min(order_date), $cutoff) as t
            from core.transactions
            where is_completed_order and order_date <= $cutoff
            group by customer_id
            order by customer_id
            """,
            params={"cutoff": cutoff},
        ).pl()
        frequency, recency, t = (
            summary[name].to_numpy().astype(float) for name in ("frequency", "recency", "t")
        )
        fitter = BetaGeoFitter(penalizer_coef=0.001).fit(frequency, recency, t)
        p_alive = np.asarray(fitter.conditional_probability_alive(frequency, recency, t))
        r, alpha = fitter.params_["r"], fitter.params_["alpha"]
        waiting = ((alpha + t) / (alpha + t + horizon_days)) ** (r + frequency)
        return pl.DataFrame(
            {
                "customer_id": summary["customer_id"],
                "p_alive": p_alive,
                "p_no_purchase": 1 - p_alive + p_alive * waiting,
                "expected_purchases": np.asarray(
                    fitter.conditional_expected_number_of_purchases_up_to_time(
                        horizon_days, frequency, recency, t
                    )
                ),
            }
        )

    score.calls = calls
    return score


def test_run_uses_p_no_purchase_as_a_feature_and_as_a_baseline():
    as_of = date(2024, 12, 31)
    connection = duckdb.connect(":memory:")
    connection.execute(CORE_DDL)
    load_core(connection, *simulate_core(800, as_of, seed=11))
    scorer = make_bgnbd_scorer(connection, 90)
    result = run_churn(connection, as_of, 90, bgnbd_scorer=scorer, min_labelled=100)
    connection.close()
    # once at each date: the two validation cutoffs and as_of
    assert sorted(scorer.calls) == [date(2024, 7, 4), date(2024, 10, 2), date(2024, 12, 31)]
    assert result.fallback_reason is None
    assert {"p_alive", "expected_purchases", "p_no_purchase"} <= set(result.importances["feature"])
    assert result.metrics["model"].unique().sort().to_list() == [
        "churn",
        "churn_verdict",
        "churn_vs_p_no_purchase",
        "churn_vs_recency",
    ]
    verdict = dict(
        result.metrics.filter(pl.col("model") == "churn_verdict")
        .select("metric", "value")
        .iter_rows()
    )
    assert verdict["model_published"] == float(result.published_scorer == "model")
    assert verdict["significant"] == float(verdict["roc_auc_difference_ci_low"] > 0)
    assert verdict["significant"] == float(result.model_beats_baselines)
    if result.published_scorer == "model":
        assert set(result.model.feature_names_in_) >= {"p_alive", "expected_purchases"}
    else:
        assert isinstance(result.model, BaselineChurnModel)
    assert result.scores["churn_probability"].is_between(0, 1).all()


def split_scoring(con, buckets: int, calls: list):
    """A ``bucket_scoring`` as the Dask runner's, in this process: the customers of
    models.churn_features (and the BG/NBD scores) split by bucket, each bucket scored by
    churn_scores_bucket on its own connection."""

    def part(frame: pl.DataFrame, k: int) -> pl.DataFrame:
        keys = pl.Series([bucket_of(c, buckets) for c in frame["customer_id"]], dtype=pl.Int64)
        return frame.filter(keys == k)

    def score(bgnbd, **scoring):
        features = con.sql("select * from models.churn_features").pl()
        scored = []
        for k in range(buckets):
            bucket = duckdb.connect(":memory:")
            bucket.execute("create schema models")
            for name, frame in (("churn_features", features), ("churn_bgnbd", bgnbd)):
                if frame is not None:
                    bucket.register("_part", part(frame, k))
                    bucket.execute(f"create table models.{name} as select * from _part")
                    bucket.unregister("_part")
            scored.append(churn_scores_bucket(bucket, bgnbd is not None, **scoring))
            bucket.close()
        calls.append(scoring["published"])
        return pl.concat(scored).sort("customer_id")

    return score


def test_scores_per_bucket_equal_the_scores_in_one_piece(tmp_path):
    as_of = date(2024, 12, 31)
    connection = duckdb.connect(":memory:")
    connection.execute(CORE_DDL)
    load_core(connection, *simulate_core(800, as_of, seed=11))
    scorer = make_bgnbd_scorer(connection, 90)
    calls: list[str] = []

    def run(horizon_days: int = 90, min_labelled: int = 100, **options):
        return run_churn(
            connection,
            as_of,
            horizon_days,
            bgnbd_scorer=scorer,
            min_labelled=min_labelled,
            **options,
        )

    try:
        whole = run()
        split = run(model_store=tmp_path, bucket_scoring=split_scoring(connection, 5, calls))
        # a later run reusing the saved scorer scores per bucket too
        reused = run(model_store=tmp_path, bucket_scoring=split_scoring(connection, 3, calls))
        # a fallback ranks recency over all customers at once: scored in this process
        fallback = run(300, 200, bucket_scoring=split_scoring(connection, 5, calls))
        fallback_whole = run(300, 200)
    finally:
        connection.close()
    assert whole.fallback_reason is None and whole.scores.height > 700
    assert whole.scores["churn_reasons"].is_not_null().any()
    assert split.published_scorer == whole.published_scorer
    assert_frame_equal(split.scores, whole.scores)
    assert reused.reused and not split.reused
    assert_frame_equal(reused.scores, whole.scores)
    assert calls == [whole.published_scorer] * 2
    assert fallback.fallback_reason is not None
    assert_frame_equal(fallback.scores, fallback_whole.scores)


def test_select_feature_columns_drops_ids_and_label():
    frame = pl.DataFrame(
        {"customer_id": ["a"], "cutoff_date": [date(2024, 1, 1)], "is_churned": [True], "x": [1]}
    )
    assert select_feature_columns(frame) == ["x"]


def test_delong_interval_matches_a_paired_bootstrap():
    """The DeLong standard error of an AUC difference agrees with a seeded paired bootstrap's,
    and the difference itself with scikit-learn's AUCs."""
    from sklearn.metrics import roc_auc_score

    from models.churn import delong_auc_difference

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 600)
    shared = rng.normal(size=600)
    a = y + shared + rng.normal(0, 0.8, 600)
    b = y + shared + rng.normal(0, 1.2, 600)
    difference, low, high = delong_auc_difference(y, a, b)
    assert difference == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    draws = []
    for _ in range(400):
        i = rng.integers(0, 600, 600)
        draws.append(roc_auc_score(y[i], a[i]) - roc_auc_score(y[i], b[i]))
    bootstrap_half = 1.959964 * np.std(draws)
    assert (high - low) / 2 == pytest.approx(bootstrap_half, rel=0.2)
