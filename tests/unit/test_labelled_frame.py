"""The churn step's labelled frames in DuckDB (pipelines/scoring/labelled.py): every read
gives the rows of the frame sorted by customer_id, and a model fit on the rows it samples
equals one fit on the whole frame."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from models.churn import ChurnModel
from pipelines.scoring.churn import _fit_on_sample
from pipelines.scoring.labelled import LabelledFrame


def shuffled_frame(n: int = 500, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    recency = rng.integers(0, 300, n)
    return pl.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in rng.permutation(n)],
            "days_since_last_order": recency,
            "order_total": rng.gamma(2.0, 30.0, n),
            "country": rng.choice(["DE", "FR", "NL"], n).tolist(),
            "is_churned": (recency + rng.normal(0, 60, n) > 150).tolist(),
        }
    )


@pytest.fixture
def con():
    connection = duckdb.connect()
    yield connection
    connection.close()


def test_reads_give_the_rows_in_customer_order(con):
    data = shuffled_frame()
    con.register("source", data)
    frame = LabelledFrame.create(con, "labelled", "select * from source")
    expected = data.sort("customer_id")
    assert frame.height == 500 and frame.columns == data.columns
    assert_frame_equal(frame.select(), expected)
    assert_frame_equal(frame.empty(), expected.head(0))
    assert frame.labels().equals(expected["is_churned"])
    rows = np.array([0, 3, 4, 250, 499])
    assert_frame_equal(
        frame.select(["country", "customer_id"], rows),
        expected.select("country", "customer_id")[rows],
    )
    chunks = list(frame.chunks(["customer_id", "order_total"], 64))
    assert [c.height for c in chunks] == [64] * 7 + [52]
    assert_frame_equal(pl.concat(chunks), expected.select("customer_id", "order_total"))
    frame.drop()
    assert con.execute("select count(*) from duckdb_tables() where temporary").fetchall() == [(0,)]


def test_joined_columns_follow_the_frame_and_are_null_where_unknown(con):
    data = shuffled_frame(50)
    con.register("source", data)
    frame = LabelledFrame.create(con, "labelled", "select * from source")
    assert frame.with_columns(None) is frame
    known = data.sort("customer_id").head(20)
    scores = pl.DataFrame(
        {"customer_id": known["customer_id"].reverse(), "p_no_purchase": np.linspace(0, 1, 20)}
    )
    joined = frame.with_columns(scores)
    assert joined.columns == [*data.columns, "p_no_purchase"]
    result = joined.select()
    expected = data.sort("customer_id").join(scores, on="customer_id", how="left")
    assert_frame_equal(result, expected, check_row_order=True)
    assert result["p_no_purchase"].null_count() == 30
    assert joined.covers("p_no_purchase") and not joined.covers("absent")
    # the frame before the join is gone: one table of that name
    assert con.execute("select count(*) from duckdb_tables() where temporary").fetchall() == [(1,)]


def test_a_fit_on_the_sampled_rows_equals_a_fit_on_the_whole_frame(con):
    data = shuffled_frame(2000, seed=3)
    con.register("source", data)
    frame = LabelledFrame.create(con, "labelled", "select * from source")
    features = ["days_since_last_order", "order_total", "country"]
    whole = data.sort("customer_id")
    expected = ChurnModel(random_state=1, max_train_customers=500).fit(
        whole.select(features), whole["is_churned"]
    )
    fitted = _fit_on_sample(
        ChurnModel(random_state=1, max_train_customers=500), frame, features, frame.labels()
    )
    assert fitted.n_train_customers_ == expected.n_train_customers_ == 500
    X = whole.select(features)
    assert np.array_equal(fitted.predict_proba(X), expected.predict_proba(X))
    # and a model that keeps every row reads them all
    everyone = _fit_on_sample(
        ChurnModel(random_state=1, max_train_customers=None), frame, features, frame.labels()
    )
    assert everyone.n_train_customers_ == 2000
