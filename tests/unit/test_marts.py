"""Tests for sql/marts/*.sql and pipelines/marts.py: the published tables.

The warehouse is built by hand in an in-memory DuckDB: six customers over three months
(January to a partial March 2024), their survey, complaint and support events, and the
model outputs of one run. Every expected number below is worked out by hand in comments.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from pipelines import marts
from pipelines.errors import StepError
from pipelines.sqlrun import ensure_bookkeeping_tables, run_sql

AS_OF = date(2024, 3, 15)
RUN = "r1"
RESOLUTION = "exact"  # the summary resolution the value step would have fitted

TABLES = """
create schema core; create schema models; create schema raw; create schema quarantine;
create schema audit;
create table core.transactions (
    customer_id varchar, order_id varchar, order_at timestamp, order_date date,
    amount double, quantity double, status varchar, is_completed_order boolean,
    currency varchar, channel varchar, payment_method varchar, line_count integer);
create table core.events (
    customer_id varchar, event_id varchar, event_at timestamp, event_type varchar,
    channel varchar, value double, properties varchar);
create table core.customers (
    customer_id varchar, email varchar, phone varchar, full_name varchar, birth_date date,
    gender varchar, city varchar, country varchar, marketing_consent boolean,
    is_in_customer_master boolean, source_record_count bigint, signup_at timestamp,
    updated_at timestamp);
create table core.customer_map (
    source_customer_id varchar, customer_id varchar, match_rule varchar);
create table raw.files (
    file_sha256 varchar, source varchar, file_path varchar, file_name varchar,
    size_bytes bigint, status varchar, rows_read bigint, rows_rejected bigint,
    reader varchar, columns_ignored varchar[], columns_missing varchar[],
    ingested_at timestamp, run_id varchar);
create table raw.rejected_rows (
    source varchar, _file_sha256 varchar, _source_file varchar, _row_number bigint,
    line_number bigint, reason varchar, raw_line varchar, _ingested_at timestamp,
    _run_id varchar);
create table quarantine.transactions (run_id varchar, rules varchar, _file_sha256 varchar,
                                      _row_number bigint);
create table quarantine.customers (run_id varchar, rules varchar, _file_sha256 varchar,
                                   _row_number bigint);
create table quarantine.events (run_id varchar, rules varchar, _file_sha256 varchar,
                                _row_number bigint);
create table quarantine.field_issues (
    run_id varchar, source varchar, _file_sha256 varchar, _row_number bigint,
    rule varchar, field varchar, original_value varchar);
create table audit.file_reconciliation (
    run_id varchar, source varchar, file_path varchar, file_sha256 varchar, status varchar,
    rows_read bigint, rows_loaded bigint, rows_quarantined bigint, rows_duplicate bigint,
    is_balanced boolean);
create table models.rfm_scores (customer_id varchar, r_score tinyint, f_score tinyint,
                                m_score tinyint, rfm_segment varchar);
create table models.clv_predictions (
    customer_id varchar, p_alive double, expected_purchases_30d double,
    expected_purchases_90d double, expected_order_value double, predicted_clv double,
    predicted_clv_low double, predicted_clv_high double, expected_next_order_date date);
create table models.churn_scores (customer_id varchar, churn_probability double,
                                  churn_band varchar, churn_reasons varchar);
create table models.customer_segments (customer_id varchar, value_tier varchar,
                                       lifecycle_stage varchar, recommended_action varchar);
create table models.model_parameters (run_id varchar, model varchar, parameter varchar,
                                      value double, std_error double);
create table models.model_metrics (run_id varchar, model varchar, metric varchar,
                                   value double, baseline double);
create table models.model_runs (run_id varchar, model varchar, status varchar,
                                message varchar);
"""

ORDERS = [
    # customer, order_id, order_at, amount, status
    ("A", "a1", "2024-01-05 10:00", 100.0, "completed"),
    ("A", "a2", "2024-01-20 12:00", 50.0, "completed"),
    ("A", "a3", "2024-02-10 09:00", 30.0, "completed"),
    ("A", "a4", "2024-03-03 08:00", 20.0, "completed"),
    ("B", "b1", "2024-01-10 11:00", 40.0, "completed"),
    ("B", "b2", "2024-02-14 15:00", 60.0, "cancelled"),  # B is not active in February
    ("B", "b3", "2024-03-15 18:00", 10.0, "completed"),  # on the as-of date: counts
    ("B", "b4", "2024-03-20 10:00", 99.0, "completed"),  # after as_of: ignored
    ("C", "c1", "2024-02-02 10:00", 70.0, "completed"),
    ("C", "c2", "2024-02-25 10:00", 30.0, "completed"),
    ("D", "d1", "2024-03-01 00:30", 25.0, "completed"),
    ("D", "d2", "2024-03-14 10:00", -25.0, "returned"),  # not an order of March's KPIs
    ("E", "e1", "2024-01-31 23:30", 10.0, "completed"),  # still January in UTC
    ("E", "e2", "2024-04-01 10:00", 15.0, "completed"),  # after as_of
    ("F", "f1", "2023-12-20 10:00", 80.0, "cancelled"),  # no completed order: months start in Jan
    ("H", "h1", "2024-03-20 10:00", 5.0, "completed"),  # first order after as_of
]

NPS = '{"survey": "nps"}'
CSAT = '{"survey": "csat"}'
EVENTS = [
    # customer, event_at, event_type, value, properties
    # January NPS 10, 9, 9, 8, 7, 6, 2: promoters 10, 9, 9; passives 8, 7; detractors 6, 2
    #   -> 100 * (3 - 2) / 7 = 14.29 percentage points
    ("A", "2024-01-06 10:00", "survey_response", 10, NPS),
    ("B", "2024-01-11 10:00", "survey_response", 9, NPS),
    ("E", "2024-01-12 10:00", "survey_response", 9, NPS),
    ("B", "2024-01-12 11:00", "survey_response", 8, NPS),
    ("F", "2024-01-13 10:00", "survey_response", 7, NPS),
    ("E", "2024-01-14 10:00", "survey_response", 6, NPS),
    ("A", "2024-01-21 10:00", "survey_response", 2, NPS),
    ("A", "2024-01-22 10:00", "survey_response", 10, None),  # no survey named: left out
    # January CSAT 5, 4, 3, 1 -> 2 of 4 satisfied = 0.5
    ("A", "2024-01-07 10:00", "survey_response", 5, CSAT),
    ("B", "2024-01-08 10:00", "survey_response", 4, CSAT),
    ("E", "2024-01-09 10:00", "survey_response", 3, CSAT),
    ("F", "2024-01-10 10:00", "survey_response", 1, CSAT),
    # February NPS 0, 5: 2 detractors of 2 -> -100; CSAT 4 -> 1.0
    ("C", "2024-02-03 10:00", "survey_response", 0, NPS),
    ("A", "2024-02-11 10:00", "survey_response", 5, NPS),
    ("C", "2024-02-26 10:00", "survey_response", 4, CSAT),
    # March: CSAT 2 -> 0.0; the only NPS answer is after as_of -> NULL
    ("D", "2024-03-02 10:00", "survey_response", 2, CSAT),
    ("D", "2024-03-16 00:00", "survey_response", 10, NPS),
    # complaints: January 2 per 4 orders = 0.5; February none = 0; March 2 per 3 orders
    ("A", "2024-01-25 10:00", "complaint", None, None),
    ("F", "2024-01-26 10:00", "complaint", None, None),
    ("D", "2024-03-01 12:00", "complaint", None, None),
    ("B", "2024-03-15 20:00", "complaint", None, None),
    ("B", "2024-03-16 09:00", "complaint", None, None),  # after as_of
    # support first-response hours: Jan 1, 3, 10 -> 3; Feb 2, 4 -> 3; Mar 5, 7 -> 6
    ("A", "2024-01-05 11:00", "support_ticket", 10, None),
    ("B", "2024-01-15 11:00", "support_ticket", 1, None),
    ("E", "2024-01-30 11:00", "support_ticket", 3, None),
    ("C", "2024-02-05 11:00", "support_ticket", 2, None),
    ("C", "2024-02-27 11:00", "support_ticket", 4, None),
    ("D", "2024-03-05 11:00", "support_ticket", 5, None),
    ("D", "2024-03-06 11:00", "support_ticket", None, None),  # no response time: left out
    ("B", "2024-03-15 23:59:59", "support_ticket", 7, None),
    ("B", "2024-03-16 00:00", "support_ticket", 100, None),  # after as_of
    ("A", "2024-01-05 09:00", "page_view", None, None),
]

CUSTOMERS = [
    # customer, consent, rfm_segment, clv, churn probability, band, tier, stage, action
    ("A", True, "champions", 120.0, 0.1, "low", "strategic", "active", "vip_care"),
    ("B", False, "loyal", 60.0, 0.4, "medium", "key", "reactivated", "welcome_back"),
    ("C", True, "at_risk", 30.0, 0.8, "high", "general", "at_risk", "retention_offer"),
    ("D", None, "new_customers", 90.0, 0.5, "medium", "general", "new", "nurture"),
    ("E", True, "lost", None, 0.9, "high", "general", "lapsed", "win_back_offer"),
    ("P", True, None, None, None, None, "potential", "prospect", "first_purchase_offer"),
]


def load_orders(con, orders=ORDERS):
    con.executemany(
        "insert into core.transactions select $1, $2, $3::timestamp, $3::timestamp::date, $4, "
        "1, $5, $5 = 'completed', 'EUR', 'web', 'card', 1",
        [list(o) for o in orders],
    )


def load_customers(con):
    """Profiles and scores as of AS_OF; models.rfm and models.clv_summary come from their
    real SQL."""
    run_sql(con, "models/rfm", {"as_of": AS_OF})
    run_sql(
        con,
        "models/clv_summary",
        {"as_of": AS_OF, "unit_days": 1, "period_days": 1, "resolution": "both"},
    )
    for cid, consent, rfm, clv, churn, band, tier, stage, action in CUSTOMERS:
        con.execute(
            "insert into core.customers values (?, ?, null, ?, null, null, null, 'DE', "
            "?, true, 1, '2023-01-01', '2023-06-01')",
            [cid, f"{cid.lower()}@example.com", f"Customer {cid}", consent],
        )
        con.execute(
            "insert into models.customer_segments values (?, ?, ?, ?)", [cid, tier, stage, action]
        )
        if rfm is not None:
            con.execute("insert into models.rfm_scores values (?, 3, 3, 3, ?)", [cid, rfm])
            con.execute(
                "insert into models.clv_predictions values "
                "(?, 0.5, 0.2, 0.6, 40.0, ?, null, null, '2024-04-01')",
                [cid, clv],
            )
            con.execute(
                "insert into models.churn_scores values (?, ?, ?, null)", [cid, churn, band]
            )


def load_model_outputs(con, run_id):
    """One run's parameters, metrics and model statuses (as pipelines/scoring/value.py appends them)."""
    con.execute(
        """insert into models.model_parameters values
        ($r, 'bgnbd', 'r', 0.8, 0.1), ($r, 'bgnbd', 'alpha', 5.0, 1.0),
        ($r, 'bgnbd', 'penalizer', 0.0, null)""",
        {"r": run_id},
    )
    con.execute(
        """insert into models.model_metrics values
        ($r, 'bgnbd', 'holdout_mae_repeat_purchases', 0.3, 0.5)""",
        {"r": run_id},
    )
    con.execute(
        """insert into models.model_runs values
        ($r, 'bgnbd', 'fitted', 'penalizer 0.0'),
        ($r, 'gamma_gamma', 'skipped', 'fewer than 10 repeat buyers'),
        ($r, 'churn', 'failed', null)""",
        {"r": run_id},
    )


def load_data_quality_inputs(con):
    """Two deliveries named tx.csv (different content) and one customer file."""
    con.execute("""
        insert into raw.files (file_sha256, source, file_path, file_name, status, rows_read)
        values ('s1', 'transactions', '/in/old/tx.csv', 'tx.csv', 'loaded', 5),
               ('s2', 'transactions', '/in/new/tx.csv', 'tx.csv', 'loaded', 4),
               ('s3', 'customers', '/in/c.csv', 'c.csv', 'loaded', 3);
        insert into audit.file_reconciliation values
            ('r1', 'transactions', '/in/old/tx.csv', 's1', 'loaded', 5, 3, 1, 1, true),
            ('r1', 'transactions', '/in/new/tx.csv', 's2', 'loaded', 4, 2, 2, 0, true),
            ('r1', 'customers', '/in/c.csv', 's3', 'loaded', 3, 3, 0, 0, true);
        insert into raw.rejected_rows (source, _file_sha256, _row_number, reason) values
            ('transactions', 's1', 4, 'expected 6 fields, found 7');
        insert into quarantine.transactions values
            ('r1', 'order_ts_parseable, amount_numeric', 's2', 1),
            ('r1', 'amount_numeric', 's2', 2);
        insert into quarantine.field_issues values
            ('r1', 'customers', 's3', 1, 'email_shape', 'email', 'x@'),
            ('r1', 'customers', 's3', 2, 'email_shape', 'email', 'y@'),
            ('r1', 'customers', 's3', 2, 'phone_valid', 'phone', '12');
        insert into core.customer_map values
            ('A', 'A', 'self'), ('A2', 'A', 'email'), ('B', 'B', 'self'), ('C', 'C', 'self');
    """)


@pytest.fixture
def con():
    connection = duckdb.connect()
    connection.execute("set TimeZone = 'UTC'")
    connection.execute(TABLES)
    load_orders(connection)
    connection.executemany(
        "insert into core.events values ($1, 'ev' || $6, $2::timestamp, $3, 'web', $4, $5)",
        [[*e, i] for i, e in enumerate(EVENTS)],
    )
    load_customers(connection)
    load_model_outputs(connection, RUN)
    # an earlier run's outputs, which this run's marts must not pick up
    load_model_outputs(connection, "r0")
    connection.execute("update models.model_parameters set value = 9.9 where run_id = 'r0'")
    load_data_quality_inputs(connection)
    yield connection
    connection.close()


def rows(con, sql, params=None):
    return con.execute(sql, params or {}).fetchall()


def as_dicts(con, sql, params=None):
    result = con.execute(sql, params or {})
    names = [d[0] for d in result.description]
    return [dict(zip(names, r)) for r in result.fetchall()]


# --- kpi_monthly --------------------------------------------------------------------------


def test_kpi_monthly_matches_numbers_worked_out_by_hand(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    got = as_dicts(con, "select * exclude (run_id, as_of) from marts.kpi_monthly order by month")
    approx = pytest.approx
    # January: A (2 orders), B, E active, all new; 4 orders, 100 + 50 + 40 + 10 = 200
    # February: A (returning), C (new, 2 orders); of January's A, B, E only A is back
    # March (to the 15th): A, B (back after a gap: returning, not retained), D (new);
    #   of February's A and C only A is back
    assert got == [
        {
            "month": date(2024, 1, 1),
            "is_partial_month": False,
            "active_customers": 3,
            "new_customers": 3,
            "returning_customers": 0,
            "repeat_purchase_rate": approx(1 / 3),
            "retention_rate": None,
            "churn_rate": None,
            "orders": 4,
            "revenue": approx(200.0),
            "average_order_value": approx(50.0),
            "average_predicted_clv": None,
            "nps": approx(100 / 7),
            "csat": approx(0.5),
            "complaint_rate": approx(0.5),
            "median_first_response_hours": approx(3.0),
        },
        {
            "month": date(2024, 2, 1),
            "is_partial_month": False,
            "active_customers": 2,
            "new_customers": 1,
            "returning_customers": 1,
            "repeat_purchase_rate": approx(0.5),
            "retention_rate": approx(1 / 3),
            "churn_rate": approx(2 / 3),
            "orders": 3,
            "revenue": approx(130.0),
            "average_order_value": approx(130 / 3),
            "average_predicted_clv": None,
            "nps": approx(-100.0),
            "csat": approx(1.0),
            "complaint_rate": approx(0.0),
            "median_first_response_hours": approx(3.0),
        },
        # average predicted CLV of A, B, C, D (E has none): (120 + 60 + 30 + 90) / 4 = 75
        {
            "month": date(2024, 3, 1),
            "is_partial_month": True,
            "active_customers": 3,
            "new_customers": 1,
            "returning_customers": 2,
            "repeat_purchase_rate": approx(0.0),
            "retention_rate": approx(0.5),
            "churn_rate": approx(0.5),
            "orders": 3,
            "revenue": approx(55.0),
            "average_order_value": approx(55 / 3),
            "average_predicted_clv": approx(75.0),
            "nps": None,
            "csat": approx(0.0),
            "complaint_rate": approx(2 / 3),
            "median_first_response_hours": approx(6.0),
        },
    ]


@pytest.mark.parametrize(
    "as_of, months",
    [
        (
            date(2024, 3, 15),
            [(date(2024, 1, 1), False), (date(2024, 2, 1), False), (date(2024, 3, 1), True)],
        ),
        (
            date(2024, 3, 31),
            [(date(2024, 1, 1), False), (date(2024, 2, 1), False), (date(2024, 3, 1), False)],
        ),
        (date(2024, 2, 29), [(date(2024, 1, 1), False), (date(2024, 2, 1), False)]),
        (date(2024, 1, 5), [(date(2024, 1, 1), True)]),  # on the day of the first order
        (date(2023, 12, 31), []),  # only a cancelled order so far: no month to report
    ],
)
def test_months_run_from_first_completed_order_to_as_of_and_flag_a_partial_one(con, as_of, months):
    run_sql(con, "marts/customer_360", {"as_of": as_of, "run_id": RUN, "resolution": "exact"})
    run_sql(con, "marts/kpi_monthly", {"as_of": as_of, "run_id": RUN})
    assert (
        rows(con, "select month, is_partial_month from temp.main.kpi_monthly_run order by month")
        == months
    )


def test_a_month_without_orders_is_reported_with_zeros(con):
    con.execute(
        "delete from core.transactions where order_date between '2024-02-01' and '2024-02-29'"
    )
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    got = as_dicts(
        con,
        "select month, active_customers, orders, repeat_purchase_rate, "
        "retention_rate, churn_rate, average_order_value, complaint_rate "
        "from marts.kpi_monthly order by month",
    )
    assert [g["month"] for g in got] == [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
    assert got[1] == {
        "month": date(2024, 2, 1),
        "active_customers": 0,
        "orders": 0,
        "repeat_purchase_rate": None,
        "retention_rate": 0.0,
        "churn_rate": 1.0,
        "average_order_value": None,
        "complaint_rate": None,
    }
    # nobody was active in February, so March has no base for retention
    assert (got[2]["retention_rate"], got[2]["churn_rate"]) == (None, None)


def test_kpi_share_outside_unit_interval_stops_the_run(con):
    run_sql(con, "marts/customer_360", {"as_of": AS_OF, "run_id": RUN, "resolution": "exact"})
    run_sql(con, "marts/kpi_monthly", {"as_of": AS_OF, "run_id": RUN})
    marts.check_run_rows(con, "kpi_monthly")  # the real rows pass
    con.execute(
        "update temp.main.kpi_monthly_run set retention_rate = 1.5, churn_rate = -0.5 "
        "where month = '2024-02-01'"
    )
    with pytest.raises(StepError, match="retention_rate outside"):
        marts.check_run_rows(con, "kpi_monthly")


def test_kpi_counts_that_do_not_add_up_stop_the_run(con):
    run_sql(con, "marts/customer_360", {"as_of": AS_OF, "run_id": RUN, "resolution": "exact"})
    run_sql(con, "marts/kpi_monthly", {"as_of": AS_OF, "run_id": RUN})
    con.execute("update temp.main.kpi_monthly_run set new_customers = 9 where month = '2024-01-01'")
    with pytest.raises(StepError, match="active_customers is not new_customers"):
        marts.check_run_rows(con, "kpi_monthly")


# --- segment_summary ----------------------------------------------------------------------


def test_segment_summary_counts_every_customer_once_per_dimension(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    counts = dict(rows(con, "select dimension, count(*) from marts.segment_summary group by 1"))
    # 5 RFM segments + unassigned (the prospect), 4 tiers, 6 stages, 6 actions,
    # 3 bands + unassigned
    assert counts == {
        "rfm_segment": 6,
        "value_tier": 4,
        "lifecycle_stage": 6,
        "recommended_action": 6,
        "churn_band": 4,
    }
    assert (
        rows(
            con,
            "select dimension, sum(customers), sum(share_of_customers) "
            "from marts.segment_summary group by 1 having sum(customers) <> 6 "
            "or abs(sum(share_of_customers) - 1) > 1e-9",
        )
        == []
    )


def test_segment_summary_values_match_hand_sums(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    got = as_dicts(
        con,
        """
        select segment, customers, share_of_customers, consenting_customers, revenue_total,
               net_revenue, average_predicted_clv, total_predicted_clv,
               average_churn_probability
        from marts.segment_summary where dimension = $d order by segment""",
        {"d": "churn_band"},
    )
    approx = pytest.approx
    assert got == [
        # C, E: revenue 100 + 10; CLV 30 and none; churn (0.8 + 0.9) / 2
        {
            "segment": "high",
            "customers": 2,
            "share_of_customers": approx(2 / 6),
            "consenting_customers": 2,
            "revenue_total": approx(110.0),
            "net_revenue": approx(110.0),
            "average_predicted_clv": approx(30.0),
            "total_predicted_clv": approx(30.0),
            "average_churn_probability": approx(0.85),
        },
        {
            "segment": "low",
            "customers": 1,
            "share_of_customers": approx(1 / 6),
            "consenting_customers": 1,
            "revenue_total": approx(200.0),
            "net_revenue": approx(200.0),
            "average_predicted_clv": approx(120.0),
            "total_predicted_clv": approx(120.0),
            "average_churn_probability": approx(0.1),
        },
        # B (no consent) and D (consent unknown); D's 25 was returned: net 50 + 0
        {
            "segment": "medium",
            "customers": 2,
            "share_of_customers": approx(2 / 6),
            "consenting_customers": 0,
            "revenue_total": approx(75.0),
            "net_revenue": approx(50.0),
            "average_predicted_clv": approx(75.0),
            "total_predicted_clv": approx(150.0),
            "average_churn_probability": approx(0.45),
        },
        {
            "segment": "unassigned",
            "customers": 1,
            "share_of_customers": approx(1 / 6),
            "consenting_customers": 1,
            "revenue_total": approx(0.0),
            "net_revenue": approx(0.0),
            "average_predicted_clv": None,
            "total_predicted_clv": None,
            "average_churn_probability": None,
        },
    ]


# --- data_quality -------------------------------------------------------------------------


def test_data_quality_accounts_per_file_rule_and_identity(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    got = set(
        rows(
            con,
            "select source, file_name, file_sha256, measure, rule, rows "
            "from marts.data_quality where run_id = $r",
            {"r": RUN},
        )
    )
    per_file = {
        ("transactions", "tx.csv", "s1"): (5, 3, 1, 1),
        ("transactions", "tx.csv", "s2"): (4, 2, 2, 0),
        ("customers", "c.csv", "s3"): (3, 3, 0, 0),
    }
    expected = {
        (*key, measure, None, n)
        for key, counts in per_file.items()
        for measure, n in zip(
            ("rows_read", "rows_loaded", "rows_quarantined", "rows_duplicate"), counts
        )
    }
    expected |= {
        (
            "transactions",
            "tx.csv",
            "s1",
            "quarantined_by_rule",
            "reader: expected 6 fields, found 7",
            1,
        ),
        ("transactions", "tx.csv", "s2", "quarantined_by_rule", "order_ts_parseable", 1),
        ("transactions", "tx.csv", "s2", "quarantined_by_rule", "amount_numeric", 2),
        ("customers", "c.csv", "s3", "field_blanked_by_rule", "email_shape", 2),
        ("customers", "c.csv", "s3", "field_blanked_by_rule", "phone_valid", 1),
        ("all", None, None, "source_customer_ids", None, 4),
        # customers = the rows of marts.customer_360 (the one customer count of the run
        # summary and the report), not the distinct ids of this fixture's customer_map
        ("all", None, None, "customers", None, 6),
        ("all", None, None, "customers_unified", None, 1),
    }
    assert got == expected


# --- model_parameters, model_metrics ------------------------------------------------------


def test_model_parameters_copy_this_runs_estimates_only(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    assert rows(con, "select * from marts.model_parameters order by parameter") == [
        (RUN, AS_OF, "bgnbd", "alpha", 5.0, 1.0),
        (RUN, AS_OF, "bgnbd", "penalizer", 0.0, None),
        (RUN, AS_OF, "bgnbd", "r", 0.8, 0.1),
    ]


def test_model_metrics_add_whether_each_model_was_fitted_and_why(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    assert rows(con, "select * from marts.model_metrics order by model, metric") == [
        (RUN, AS_OF, "bgnbd", "holdout_mae_repeat_purchases", 0.3, 0.5, None),
        (RUN, AS_OF, "bgnbd", "is_fitted", 1.0, None, "fitted: penalizer 0.0"),
        (RUN, AS_OF, "churn", "is_fitted", 0.0, None, "failed"),
        (RUN, AS_OF, "gamma_gamma", "is_fitted", 0.0, None, "skipped: fewer than 10 repeat buyers"),
    ]


def test_a_repeated_model_parameter_stops_the_run(con):
    con.execute(
        "insert into models.model_parameters values ($r, 'bgnbd', 'r', 0.9, 0.1)", {"r": RUN}
    )
    with pytest.raises(StepError, match="model_parameters would have 2 rows"):
        marts.build_marts(con, AS_OF, RUN, RESOLUTION)


# --- history, build order, comments -------------------------------------------------------


def test_build_marts_returns_rows_per_table_in_order(con):
    got = marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    assert list(got) == list(marts.MARTS_ORDER)
    # 6 customers (5 buyers and a prospect); 26 segments; 3 months; 20 quality measures;
    # 3 parameters; 1 metric + 3 fit statuses
    assert got == {
        "customer_360": 6,
        "segment_summary": 26,
        "kpi_monthly": 3,
        "data_quality": 20,
        "model_parameters": 3,
        "model_metrics": 4,
        "customer_id_changes": 0,
    }
    assert rows(con, "select count(*) from duckdb_tables() where temporary") == [(0,)]


def publish(con, run_id):
    con.execute("insert into audit.publications (run_id, as_of) values (?, ?)", [run_id, AS_OF])


def test_history_keeps_other_published_runs_and_a_rerun_replaces_its_own_rows(con):
    marts.build_marts(con, AS_OF, "r1", RESOLUTION)
    publish(con, "r1")
    load_model_outputs(con, "r2")
    marts.build_marts(con, AS_OF, "r2", RESOLUTION)
    publish(con, "r2")
    per_run = "select run_id, count(*) from marts.{} group by 1 order by 1"
    for table, n1, n2 in (
        ("kpi_monthly", 3, 3),
        ("segment_summary", 26, 26),
        ("data_quality", 20, 20),
        ("model_parameters", 3, 3),
        ("model_metrics", 4, 4),
    ):
        assert rows(con, per_run.format(table)) == [("r1", n1), ("r2", n2)], table
    # r1 again after order c2 was corrected away: r1's rows change, r2's stay
    con.execute("delete from core.transactions where order_id = 'c2'")
    marts.build_marts(con, AS_OF, "r1", RESOLUTION)
    assert rows(
        con, "select run_id, orders from marts.kpi_monthly where month = '2024-02-01' order by 1"
    ) == [("r1", 2), ("r2", 3)]
    assert rows(con, per_run.format("kpi_monthly")) == [("r1", 3), ("r2", 3)]


def test_history_drops_the_rows_of_a_run_that_was_never_published(con):
    marts.build_marts(con, AS_OF, "r1", RESOLUTION)
    publish(con, "r1")
    load_model_outputs(con, "failed")
    marts.build_marts(con, AS_OF, "failed", RESOLUTION)  # the run then fails: not published
    load_model_outputs(con, "r3")
    marts.build_marts(con, AS_OF, "r3", RESOLUTION)
    for table in marts.HISTORY_TABLES[:-1]:  # customer_id_changes has no rows here
        assert rows(con, f"select distinct run_id from marts.{table} order by 1") == [
            ("r1",),
            ("r3",),
        ], table


def test_a_failed_check_leaves_the_history_unchanged(con, monkeypatch):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    before = rows(con, "select * from marts.kpi_monthly order by month")
    con.execute("delete from core.transactions where order_id = 'c2'")
    monkeypatch.setitem(marts.INVARIANTS, "kpi_monthly", (("always wrong", "true"),))
    with pytest.raises(StepError, match="always wrong"):
        marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    assert rows(con, "select * from marts.kpi_monthly order by month") == before


def test_a_history_table_from_an_older_definition_gains_the_new_columns(con):
    con.execute("create schema marts")
    con.execute(
        "create table marts.kpi_monthly (run_id varchar, as_of date, month date, "
        "active_customers bigint)"
    )
    con.execute("insert into marts.kpi_monthly values ('r0', '2024-01-31', '2024-01-01', 3)")
    ensure_bookkeeping_tables(con)
    publish(con, "r0")
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    assert rows(
        con,
        "select run_id, month, active_customers, is_partial_month "
        "from marts.kpi_monthly order by run_id, month",
    ) == [
        ("r0", date(2024, 1, 1), 3, None),
        (RUN, date(2024, 1, 1), 3, False),
        (RUN, date(2024, 2, 1), 2, False),
        (RUN, date(2024, 3, 1), 3, True),
    ]


def test_every_marts_table_and_column_has_a_description(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    columns = rows(
        con,
        "select table_name, column_name, comment from duckdb_columns() "
        "where schema_name = 'marts' order by all",
    )
    assert {t for t, _, _ in columns} == set(marts.MARTS_ORDER)
    assert [(t, c) for t, c, comment in columns if not comment] == []
    assert (
        "customer_360",
        "expected_purchases_90d",
        "Expected number of completed orders in the 90 days after as_of (BG/NBD); NULL "
        "when the model was not fitted.",
    ) in columns
    assert (
        rows(
            con,
            "select table_name from duckdb_tables() "
            "where schema_name = 'marts' and comment is null",
        )
        == []
    )


def test_an_undocumented_marts_column_stops_the_run(con):
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    con.execute("alter table marts.kpi_monthly add column mystery integer")
    with pytest.raises(StepError, match=r"marts\.kpi_monthly\.mystery"):
        marts.comment_marts(con)


# --- contract files (sql/marts/<table>.toml) ----------------------------------------------


def copy_contracts(tmp_path, monkeypatch):
    """The contract files copied to tmp_path, which the marts step then reads instead."""
    for table in marts.MARTS_ORDER:
        source = marts.CONTRACT_DIR / f"{table}.toml"
        (tmp_path / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(marts, "CONTRACT_DIR", tmp_path)
    return tmp_path


def test_a_column_missing_from_its_contract_stops_the_run(con, tmp_path, monkeypatch):
    contract = copy_contracts(tmp_path, monkeypatch) / "kpi_monthly.toml"
    text = contract.read_text(encoding="utf-8")
    kept = [line for line in text.splitlines() if not line.startswith("orders = ")]
    assert len(kept) == len(text.splitlines()) - 1
    contract.write_text("\n".join(kept) + "\n", encoding="utf-8")
    with pytest.raises(
        StepError,
        match=r"No description for marts\.kpi_monthly\.orders\. "
        r".*sql/marts/<table>\.toml",
    ):
        marts.build_marts(con, AS_OF, RUN, RESOLUTION)


def test_a_contract_describing_a_column_the_table_lacks_stops_the_run(con, tmp_path, monkeypatch):
    contract = copy_contracts(tmp_path, monkeypatch) / "model_parameters.toml"
    with contract.open("a", encoding="utf-8") as file:
        file.write('retired = "A column the SQL no longer builds."\n')
    with pytest.raises(StepError, match=r"marts\.model_parameters\.retired"):
        marts.build_marts(con, AS_OF, RUN, RESOLUTION)


def test_descriptions_reach_the_catalog_verbatim_with_quotes_escaped(con, tmp_path, monkeypatch):
    contract = copy_contracts(tmp_path, monkeypatch) / "model_metrics.toml"
    text = contract.read_text(encoding="utf-8").replace(
        'message = "For is_fitted rows:', "message = \"It's 'quoted'; -- For is_fitted rows:"
    )
    contract.write_text(text, encoding="utf-8")
    marts.build_marts(con, AS_OF, RUN, RESOLUTION)
    assert rows(
        con,
        "select comment from duckdb_columns() where schema_name = 'marts' "
        "and table_name = 'model_metrics' and column_name = 'message'",
    ) == [
        (
            "It's 'quoted'; -- For is_fitted rows: the status (fitted, skipped, failed) and its "
            "reason; NULL for other metrics.",
        )
    ]


def test_grains_and_invariants_come_from_the_contracts():
    assert marts.GRAINS["customer_360"] == ("customer_id",)
    assert marts.GRAINS["data_quality"] == ("source", "file_sha256", "measure", "rule")
    assert set(marts.INVARIANTS) == {
        "kpi_monthly",
        "segment_summary",
        "data_quality",
        "customer_id_changes",
    }
    assert marts.INVARIANTS["data_quality"] == (("a count is negative", "rows < 0"),)


def test_a_pattern_entry_describes_every_configured_horizon():
    spec = marts.contract("customer_360")
    assert spec.describe("expected_purchases_365d") == (
        "Expected number of completed orders in the 365 days after as_of (BG/NBD); NULL "
        "when the model was not fitted."
    )
    assert spec.describe("expected_purchases_d") is None
    assert spec.describe("expected_purchases_30days") is None


def test_a_malformed_contract_names_its_file_and_key(tmp_path):
    path = tmp_path / "kpi_monthly.toml"
    path.write_text(
        'description = "x"\ngrain = ["month"]\n[columns]\nmonth = ""\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"kpi_monthly\.toml: column month needs a non-empty"):
        marts.load_contract(path)


def test_docs_marts_md_is_generated_from_the_contracts(capsysbinary):
    committed = (marts.SQL_DIR.parent / "docs" / "marts.md").read_text(encoding="utf-8")
    assert committed == marts.render_docs(), (
        "docs/marts.md differs from the contract files sql/marts/*.toml; regenerate it: "
        ".venv/bin/python -m pipelines.marts --docs > docs/marts.md"
    )
    assert marts.main(["--docs"]) == 0
    assert capsysbinary.readouterr().out.decode("utf-8") == committed
