"""Tests for sql/models/rfm.sql and models/rfm.py."""

from __future__ import annotations

import random
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from models.rfm import DEFAULT_RFM_GRID, RfmGrid, SegmentRule, score_rfm
from tests.helpers import load_core_transactions

RFM_SQL = (Path(__file__).resolve().parents[2] / "sql/models/rfm.sql").read_text()

# core.transactions as documented in docs/core_tables.md

AS_OF = date(2024, 1, 31)
ROWS = [
    # customer, order_at, amount, status
    ("A", "2024-01-01 10:00", 10.0, "completed"),
    ("A", "2024-01-01 15:00", 20.0, "completed"),
    ("A", "2024-01-11 09:00", 30.0, "completed"),
    ("A", "2024-01-20 12:00", -15.0, "returned"),  # a return: deducted
    ("A", "2024-01-21 12:00", 50.0, "cancelled"),  # never revenue
    ("A", "2024-01-25 12:00", 40.0, "refunded"),  # the reversed sale itself: neither
    ("A", "2024-02-05 12:00", 99.0, "completed"),  # after as_of
    ("B", "2024-01-31 23:00", 5.0, "completed"),  # on as_of
    ("C", "2024-01-05 12:00", 25.0, "cancelled"),  # no completed order: no row
    ("Z", "2024-01-05 12:00", 0.0, "completed"),  # zero amount is not a purchase: no row
    ("N", "2024-01-10 08:00", 100.0, "completed"),
    (
        "N",
        "2024-01-12 08:00",
        -30.0,
        "completed",
    ),  # negative amount delivered with the default status
    ("N", "2024-01-13 08:00", -10.0, "cancelled"),  # a cancelled return: ignored
]


@pytest.fixture
def con():
    connection = duckdb.connect()
    load_core_transactions(connection, ROWS, order_id_digits=2)
    yield connection
    connection.close()


def build_rfm(con, as_of=AS_OF) -> dict[str, dict]:
    con.execute(RFM_SQL, {"as_of": as_of})
    frame = con.sql("select * from models.rfm order by customer_id").pl()
    return {row["customer_id"]: row for row in frame.iter_rows(named=True)}


def test_rfm_sql_has_one_row_per_customer_with_a_completed_order(con):
    rows = build_rfm(con)
    assert sorted(rows) == ["A", "B", "N"]
    con.execute(RFM_SQL, {"as_of": AS_OF})
    assert con.sql("select * from models.rfm").columns == [
        "customer_id",
        "recency_days",
        "frequency",
        "monetary_value",
        "average_order_value",
        "orders_total",
        "revenue_total",
        "average_gap_days",
        "last_gap_days",
        "first_purchase_at",
        "last_purchase_at",
    ]


def test_rfm_sql_values_follow_the_documented_definitions(con):
    a = build_rfm(con)["A"]
    assert a["frequency"] == 3
    assert a["revenue_total"] == pytest.approx(60.0)
    assert a["monetary_value"] == pytest.approx(45.0)  # 60 - 15 returned
    assert a["average_order_value"] == pytest.approx(20.0)
    assert a["orders_total"] == 6  # every status, up to as_of
    assert a["recency_days"] == 20  # 2024-01-11 -> 2024-01-31
    assert a["first_purchase_at"] == datetime(2024, 1, 1, 10)
    assert a["last_purchase_at"] == datetime(2024, 1, 11, 9)
    assert a["last_gap_days"] == pytest.approx(9.75)  # 01-01 15:00 -> 01-11 09:00
    assert a["average_gap_days"] == pytest.approx((9 + 23 / 24) / 2)


def test_rfm_sql_counts_negative_rows_as_returns_and_ignores_cancelled_ones(con):
    n = build_rfm(con)["N"]
    assert (n["frequency"], n["revenue_total"], n["monetary_value"], n["orders_total"]) == (
        1,
        100.0,
        70.0,
        3,
    )
    assert n["average_gap_days"] is None and n["last_gap_days"] is None


def test_rfm_sql_uses_only_rows_up_to_as_of(con):
    b = build_rfm(con)["B"]
    assert (b["recency_days"], b["frequency"]) == (0, 1)
    earlier = build_rfm(con, date(2024, 1, 10))
    assert sorted(earlier) == ["A", "N"]
    assert earlier["A"]["frequency"] == 2 and earlier["A"]["recency_days"] == 9
    later = build_rfm(con, date(2024, 2, 29))
    assert later["A"]["frequency"] == 4 and later["A"]["orders_total"] == 7


def test_rfm_sql_last_gap_is_zero_when_the_two_latest_orders_share_an_instant(con):
    con.execute("""insert into core.transactions values
        ('T', 't1', '2024-01-02 10:00', '2024-01-02', 10, 1, 'completed', true, null, null, null, 1),
        ('T', 't2', '2024-01-05 10:00', '2024-01-05', 10, 1, 'completed', true, null, null, null, 1),
        ('T', 't3', '2024-01-05 10:00', '2024-01-05', 10, 1, 'completed', true, null, null, null, 1)""")
    t = build_rfm(con)["T"]
    assert t["last_gap_days"] == 0.0 and t["average_gap_days"] == pytest.approx(1.5)


# --------------------------------------------------------------------------- scores


def frame(recency, frequency, monetary):
    return pl.DataFrame(
        {
            "customer_id": [f"c{i:02d}" for i in range(len(recency))],
            "recency_days": recency,
            "frequency": frequency,
            "monetary_value": monetary,
        }
    )


def test_scores_are_quintiles_of_customers_strictly_below():
    scored = score_rfm(frame(list(range(10)), list(range(1, 11)), [float(x) for x in range(10)]))
    # ten distinct values: two customers per score
    assert scored["f_score"].to_list() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert scored["m_score"].to_list() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # recency is reversed: 0 days since the last order is best
    assert scored["r_score"].to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_equal_values_share_a_score_and_the_lowest_value_scores_one():
    scored = score_rfm(
        frame([0, 1, 1, 5, 10, 20, 30, 30, 100, 400], [1, 1, 1, 1, 1, 1, 2, 2, 3, 9], [1.0] * 10)
    )
    assert scored["r_score"].to_list() == [5, 4, 4, 4, 3, 3, 2, 2, 1, 1]
    # 60% one-time buyers all get 1; then 2 orders: 6 of 10 below -> 4
    assert scored["f_score"].to_list() == [1, 1, 1, 1, 1, 1, 4, 4, 5, 5]
    assert scored["m_score"].to_list() == [1] * 10


def test_scores_do_not_depend_on_row_order():
    rng = random.Random(3)
    base = frame(
        [rng.randrange(0, 50) for _ in range(40)],
        [rng.randrange(1, 6) for _ in range(40)],
        [float(rng.randrange(0, 20)) for _ in range(40)],
    )
    shuffled = base.sample(fraction=1.0, shuffle=True, seed=5)
    left = score_rfm(base).sort("customer_id")
    right = score_rfm(shuffled).sort("customer_id")
    assert left.equals(right)
    assert score_rfm(shuffled)["customer_id"].to_list() == shuffled["customer_id"].to_list()


def test_segments_come_from_the_default_grid():
    scored = score_rfm(
        frame([0, 1, 1, 5, 10, 20, 30, 30, 100, 400], [1, 1, 1, 1, 1, 1, 2, 2, 3, 9], [1.0] * 10)
    )
    assert scored["rfm_segment"].to_list() == [
        "new_customers",
        "promising",
        "promising",
        "promising",
        "about_to_sleep",
        "about_to_sleep",
        "at_risk",
        "at_risk",
        "cannot_lose_them",
        "cannot_lose_them",
    ]


def test_default_grid_is_the_documented_eleven_segment_grid():
    table = {
        5: [
            "new_customers",
            "potential_loyalists",
            "potential_loyalists",
            "champions",
            "champions",
        ],
        4: ["promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"],
        3: ["about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"],
        2: ["hibernating", "hibernating", "at_risk", "at_risk", "cannot_lose_them"],
        1: ["lost", "lost", "at_risk", "at_risk", "cannot_lose_them"],
    }
    mapping = DEFAULT_RFM_GRID.mapping()
    assert {(r, f + 1): name for r, names in table.items() for f, name in enumerate(names)} == {
        (key // 10, key % 10): name for key, name in mapping.items()
    }
    assert len(DEFAULT_RFM_GRID.segments) == 11


def test_configured_grid_replaces_the_default():
    grid = RfmGrid.from_dict(
        {
            "best": {"r": [4, 5], "f": [4, 5]},
            "rest": [{"r": [1, 3], "f": [1, 5]}, {"r": [4, 5], "f": [1, 3]}],
        }
    )
    assert grid.segments == ("best", "rest")
    scored = score_rfm(frame(list(range(10)), list(range(1, 11)), [1.0] * 10), grid=grid)
    assert scored["rfm_segment"].to_list() == ["rest"] * 10  # high r has low f here
    scored = score_rfm(frame([0, 10, 20, 30, 40], [9, 1, 1, 1, 1], [1.0] * 5), grid=grid)
    assert scored["rfm_segment"].to_list() == ["best", "rest", "rest", "rest", "rest"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"x": {"r": [1, 5], "f": [1, 4]}},
            r"rfm\.segments: cell r=1, f=5 is not covered by any segment",
        ),
        (
            {"x": {"r": [1, 5], "f": [1, 5]}, "y": {"r": 3, "f": 3}},
            r"rfm\.segments: cell r=3, f=3 is covered twice, by 'x' and 'y'",
        ),
        ({"x": {"r": [0, 5], "f": [1, 5]}}, r"rfm\.segments\.x\.r must be a score range"),
        ({"x": {"r": [1, 5]}}, r"rfm\.segments\.x must have exactly the keys r and f"),
        ({}, r"rfm\.segments must be a table"),
    ],
)
def test_invalid_grid_raises_naming_the_key_or_cell(config, message):
    with pytest.raises(ValueError, match=message):
        RfmGrid.from_dict(config)


def test_grid_built_in_code_is_validated_too():
    with pytest.raises(ValueError, match="cell r=1, f=1 is not covered"):
        RfmGrid((SegmentRule("x", (2, 5), (1, 5)),))


def test_missing_or_null_inputs_are_rejected():
    with pytest.raises(ValueError, match="lacks column"):
        score_rfm(pl.DataFrame({"recency_days": [1], "frequency": [1]}))
    with pytest.raises(ValueError, match="null values in monetary_value"):
        score_rfm(frame([1, 2], [1, 1], [1.0, None]))


def test_empty_frame_scores_to_an_empty_frame():
    empty = frame([], [], []).cast(
        {"recency_days": pl.Int64, "frequency": pl.Int64, "monetary_value": pl.Float64}
    )
    scored = score_rfm(empty)
    assert scored.height == 0 and "rfm_segment" in scored.columns
