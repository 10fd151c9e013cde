"""Issue 14's churn targets on the CDNOW master file lifetimes ships (data nobody here wrote):
as of 1998-03-31 with H = 90 days, the published churn score ranks the real outcome at least
as well as the best baseline, and every high-band customer has reasons. Also: every churn
feature belongs to a reason group."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from models.churn import select_feature_columns
from models.churn.reasons import REASON_GROUPS
from pipelines.scoring.churn import build_churn_features, run_churn
from tests.integration.test_churn import CORE_DDL, make_bgnbd_scorer
from tests.unit.test_clv import DATASETS, load_cdnow

AS_OF = date(1998, 3, 31)
HORIZON = 90


@pytest.fixture(scope="module")
def cdnow_run():
    connection = duckdb.connect()
    # CORE_DDL's empty profile and event tables; the transactions are CDNOW's
    connection.execute(CORE_DDL.replace("create table core.transactions", "create table _unused"))
    load_cdnow(connection, DATASETS / "CDNOW_master.txt", ["customer_id", "date", "cds", "amount"])
    scorer = make_bgnbd_scorer(connection, HORIZON)
    outputs = {}

    def keep(cutoff: date) -> pl.DataFrame:
        outputs[cutoff] = scorer(cutoff)
        return outputs[cutoff]

    result = run_churn(connection, AS_OF, HORIZON, bgnbd_scorer=keep)
    # the real outcome of the published scores: a completed order in the 90 days after as_of
    # (the file runs to 1998-06-30)
    bought = {
        customer_id
        for (customer_id,) in connection.execute(
            "select distinct customer_id from core.transactions where is_completed_order "
            "and order_date > $as_of and order_date <= $end",
            {"as_of": AS_OF, "end": AS_OF + timedelta(days=HORIZON)},
        ).fetchall()
    }
    features = connection.sql("select * from models.churn_features").pl().sort("customer_id")
    # P(no purchase) at as_of, from the BG/NBD fit on the data up to it
    features = features.join(
        outputs[AS_OF].select("customer_id", "p_no_purchase"), on="customer_id", how="left"
    )
    yield result, features, bought
    connection.close()


def test_cdnow_published_churn_score_ranks_at_least_as_well_as_the_best_baseline(cdnow_run):
    result, features, bought = cdnow_run
    scores = result.scores.join(features, on="customer_id", how="left", maintain_order="left")
    churned = ~scores["customer_id"].is_in(list(bought)).to_numpy()
    published = roc_auc_score(churned, scores["churn_probability"].to_numpy())
    recency = roc_auc_score(churned, scores["days_since_last_order"].to_numpy())
    p_none = roc_auc_score(churned, scores["p_no_purchase"].to_numpy())
    baselines = {"recency": recency, "p_no_purchase": p_none}
    best = max(baselines.values())
    # ties in a monotone rescaling of the same baseline may move the AUC in the 4th decimal
    assert published >= best - 1e-3, (published, baselines, result.published_scorer)
    # the run's own verdict was taken on the test cutoff; the real outcome agrees
    assert result.published_scorer in ("model", "recency", "p_no_purchase")


def test_cdnow_every_high_band_customer_has_reasons(cdnow_run):
    result, _, _ = cdnow_run
    high = result.scores.filter(pl.col("churn_band") == "high")
    assert high.height > 1000
    assert high["churn_reasons"].null_count() == 0
    assert high["churn_reasons"].str.contains(r"^no order for \d+ days").all()
    assert result.scores.filter(pl.col("churn_band") == "low")["churn_reasons"].null_count() == (
        result.scores.filter(pl.col("churn_band") == "low").height
    )


def test_every_churn_feature_belongs_to_one_reason_group():
    connection = duckdb.connect()
    connection.execute(CORE_DDL)
    features = select_feature_columns(build_churn_features(connection, AS_OF))
    connection.close()
    grouped = [name for members in REASON_GROUPS.values() for name in members]
    assert len(grouped) == len(set(grouped))
    # the customer-base model's columns are joined in by the churn step
    assert set(features) | {"p_alive", "expected_purchases", "p_no_purchase"} == set(grouped)
    assert np.all([name in grouped for name in features])
