"""Tests for models/segments.py: value tiers, lifecycle stages, recommended actions."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from models.segments import (
    DEFAULT_PLAYBOOK,
    LifecycleRules,
    Playbook,
    PlaybookRule,
    TierRules,
    assign_lifecycle_stages,
    assign_value_tiers,
    recommend_actions,
    segment_customers,
)

AS_OF = date(2024, 6, 30)


def buyers(values, *, clv=None, recency=None, ids=None) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {
            "customer_id": ids or [f"c{i:03d}" for i in range(n)],
            "has_completed_order": [True] * n,
            "revenue_total": [float(v) for v in values],
            "recency_days": recency or [10] * n,
            "predicted_clv": clv if clv is not None else [None] * n,
        },
        schema_overrides={"predicted_clv": pl.Float64},
    )


# --------------------------------------------------------------------------- value tiers


def test_top_five_and_next_fifteen_percent_of_active_buyers_are_strategic_and_key():
    customers = buyers(list(range(100, 0, -1)))  # c000 has the most revenue
    tiers = assign_value_tiers(customers)["value_tier"].to_list()
    assert tiers == ["strategic"] * 5 + ["key"] * 15 + ["general"] * 80
    # 0.07 x 100 is 7.000000000000001 in floating point: still 7 customers
    tiers = assign_value_tiers(customers, rules=TierRules(strategic_share=0.07, key_share=0.14))[
        "value_tier"
    ]
    assert tiers.to_list() == ["strategic"] * 7 + ["key"] * 14 + ["general"] * 79
    # few buyers: each tier with a share still gets ceil(share x n) customers
    tiers = assign_value_tiers(buyers(list(range(10, 0, -1))))["value_tier"].to_list()
    assert tiers == ["strategic"] + ["key"] * 2 + ["general"] * 7


def test_predicted_clv_ranks_when_every_active_buyer_has_one():
    customers = buyers([10, 20, 30], clv=[300.0, 100.0, 200.0])
    assert assign_value_tiers(customers)["value_tier"].to_list() == ["strategic", "general", "key"]
    # a missing CLV for one active buyer: revenue ranks everyone (never mixed scales)
    customers = buyers([10, 20, 30], clv=[300.0, None, 200.0])
    assert assign_value_tiers(customers)["value_tier"].to_list() == ["general", "key", "strategic"]


def test_inactive_buyers_are_general_and_customers_without_orders_are_potential():
    customers = pl.concat(
        [
            buyers([1000, 10], recency=[400, 10], ids=["old_whale", "recent"]),
            pl.DataFrame(
                {
                    "customer_id": ["prospect"],
                    "has_completed_order": [False],
                    "revenue_total": [None],
                    "recency_days": [None],
                    "predicted_clv": [None],
                },
                schema_overrides={
                    "revenue_total": pl.Float64,
                    "recency_days": pl.Int64,
                    "predicted_clv": pl.Float64,
                },
            ),
        ]
    )
    out = assign_value_tiers(customers)
    assert dict(out.select("customer_id", "value_tier").rows()) == {
        "old_whale": "general",
        "recent": "strategic",
        "prospect": "potential",
    }


def test_ties_are_broken_by_customer_id_not_row_order():
    customers = buyers([50, 50, 50, 50], ids=["d", "b", "a", "c"])
    rules = TierRules(strategic_share=0.25, key_share=0.25)
    out = assign_value_tiers(customers, rules=rules)
    assert out["customer_id"].to_list() == ["d", "b", "a", "c"]  # input order kept
    assert dict(out.select("customer_id", "value_tier").rows()) == {
        "a": "strategic",
        "b": "key",
        "c": "general",
        "d": "general",
    }


def test_tier_rules_from_config_validate_with_the_key_name():
    assert TierRules.from_dict({"strategic_share": 0.1}) == TierRules(strategic_share=0.1)
    with pytest.raises(
        ValueError, match=r"^tiers\.strategic_share must be between 0 and 1, got 1\.5$"
    ):
        TierRules.from_dict({"strategic_share": 1.5})
    with pytest.raises(
        ValueError, match=r"tiers\.top_share is not a known setting; allowed: strategic_share"
    ):
        TierRules.from_dict({"top_share": 0.1})
    with pytest.raises(
        ValueError, match=r"value\.tiers\.active_within_days must be a whole number"
    ):
        TierRules.from_dict({"active_within_days": 30.5}, key="value.tiers")
    with pytest.raises(
        ValueError, match=r"tiers\.strategic_share \+ tiers\.key_share must be at most 1"
    ):
        TierRules.from_dict({"strategic_share": 0.6, "key_share": 0.5})


# --------------------------------------------------------------------------- lifecycle


def lifecycle_frame(rows) -> pl.DataFrame:
    columns = [
        "customer_id",
        "has_completed_order",
        "recency_days",
        "first_purchase_at",
        "average_gap_days",
        "last_gap_days",
        "p_alive",
        "churn_probability",
    ]
    return pl.DataFrame(
        rows,
        schema={
            "customer_id": pl.String,
            "has_completed_order": pl.Boolean,
            "recency_days": pl.Int64,
            "first_purchase_at": pl.Datetime,
            "average_gap_days": pl.Float64,
            "last_gap_days": pl.Float64,
            "p_alive": pl.Float64,
            "churn_probability": pl.Float64,
        },
        orient="row",
    ).select(columns)


LONG_AGO = datetime(2020, 1, 1)


DEFAULT_LIFECYCLE = LifecycleRules()


def stages_of(rows, rules=DEFAULT_LIFECYCLE):
    out = assign_lifecycle_stages(lifecycle_frame(rows), as_of=AS_OF, rules=rules)
    return dict(out.select("customer_id", "lifecycle_stage").rows())


def test_lifecycle_stages_follow_the_documented_rules():
    stages = stages_of(
        [
            ("prospect", False, None, None, None, None, None, None),
            ("new", True, 5, datetime(2024, 5, 1), None, None, None, None),
            ("reactivated", True, 20, LONG_AGO, 300.0, 500.0, 0.9, None),
            ("lapsed", True, 400, LONG_AGO, 30.0, 30.0, 0.05, None),
            ("risk_by_churn_model", True, 10, LONG_AGO, 30.0, 30.0, 0.99, 0.8),
            ("safe_by_churn_model", True, 100, LONG_AGO, 30.0, 30.0, 0.1, 0.2),
            ("risk_by_p_alive", True, 10, LONG_AGO, 30.0, 30.0, 0.3, None),
            ("risk_by_gap", True, 70, LONG_AGO, 30.0, 30.0, None, None),
            ("risk_one_order", True, 200, LONG_AGO, None, None, 1.0, None),
            ("active", True, 50, LONG_AGO, 30.0, 30.0, 0.9, None),
            ("active_one_order", True, 100, LONG_AGO, None, None, 1.0, None),
        ]
    )
    assert stages == {
        "prospect": "prospect",
        "new": "new",
        "reactivated": "reactivated",
        "lapsed": "lapsed",
        "risk_by_churn_model": "at_risk",
        "safe_by_churn_model": "active",
        "risk_by_p_alive": "at_risk",
        "risk_by_gap": "at_risk",
        "risk_one_order": "at_risk",
        "active": "active",
        "active_one_order": "active",
    }


def test_lifecycle_thresholds_are_configurable():
    row = ("x", True, 100, datetime(2024, 4, 1), None, None, None, None)  # first order 90 days ago
    assert stages_of([row]) == {"x": "new"}
    assert stages_of([row], LifecycleRules.from_dict({"new_within_days": 30})) == {"x": "active"}
    assert stages_of(
        [row], LifecycleRules.from_dict({"new_within_days": 30, "at_risk_after_days": 60})
    ) == {"x": "at_risk"}
    with pytest.raises(
        ValueError, match=r"lifecycle\.at_risk_p_alive must be between 0 and 1, got 2"
    ):
        LifecycleRules.from_dict({"at_risk_p_alive": 2})


def test_lifecycle_works_without_model_columns():
    frame = lifecycle_frame([("x", True, 70, LONG_AGO, 30.0, 30.0, None, None)]).drop(
        "p_alive", "churn_probability"
    )
    out = assign_lifecycle_stages(frame, as_of=AS_OF)
    assert out.columns == [*frame.columns, "lifecycle_stage"]
    assert out["lifecycle_stage"].to_list() == ["at_risk"]


# --------------------------------------------------------------------------- playbook


def action_frame(rows) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "customer_id": pl.String,
            "value_tier": pl.String,
            "lifecycle_stage": pl.String,
            "rfm_segment": pl.String,
            "expected_next_order_date": pl.Date,
        },
        orient="row",
    )


def actions_of(rows, playbook=DEFAULT_PLAYBOOK):
    out = recommend_actions(action_frame(rows), as_of=AS_OF, playbook=playbook)
    return dict(out.select("customer_id", "recommended_action").rows())


def test_default_playbook_first_match_wins():
    soon, later = AS_OF + timedelta(days=10), AS_OF + timedelta(days=40)
    actions = actions_of(
        [
            ("strategic_at_risk", "strategic", "at_risk", "champions", soon),
            ("key_at_risk", "key", "at_risk", "loyal", None),
            ("general_at_risk", "general", "at_risk", "at_risk", soon),
            ("lapsed", "general", "lapsed", "lost", None),
            ("new", "general", "new", "new_customers", soon),
            ("back", "general", "reactivated", "promising", None),
            ("champion", "key", "active", "champions", soon),
            ("due", "general", "active", "loyal", soon),
            ("not_due", "general", "active", "loyal", later),
            ("prospect", "potential", "prospect", None, None),
        ]
    )
    assert actions == {
        "strategic_at_risk": "personal_call_account_manager",
        "key_at_risk": "personal_call_account_manager",
        "general_at_risk": "retention_offer",
        "lapsed": "win_back_offer",
        "new": "onboarding",
        "back": "welcome_back",
        "champion": "vip_care",
        "due": "reorder_reminder",
        "not_due": "nurture",
        "prospect": "first_purchase_offer",
    }


def test_configured_playbook_replaces_the_default():
    playbook = Playbook.from_dict(
        {
            "rules": [
                {"action": "vip_breakfast", "tiers": ["strategic"], "segments": ["champions"]},
                {"action": "reminder", "order_due_within_days": 45},
                {"action": "nothing"},
            ]
        }
    )
    later = AS_OF + timedelta(days=40)
    actions = actions_of(
        [
            ("a", "strategic", "active", "champions", None),
            ("b", "key", "at_risk", "champions", later),
            ("c", "general", "active", None, None),
        ],
        playbook,
    )
    assert actions == {"a": "vip_breakfast", "b": "reminder", "c": "nothing"}


def test_playbook_segments_are_checked_against_the_configured_grid():
    config = {"rules": [{"action": "x", "segments": ["whales"]}, {"action": "y"}]}
    with pytest.raises(
        ValueError,
        match=r"playbook\.rules\[0\]\.segments: unknown value 'whales'; allowed: champions",
    ):
        Playbook.from_dict(config)
    playbook = Playbook.from_dict(config, segments=("whales", "minnows"))
    assert playbook.rules[0] == PlaybookRule("x", segments=("whales",))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"rules": [{"action": "x", "tiers": ["vip"]}, {"action": "y"}]},
            r"playbook\.rules\[0\]\.tiers: unknown value 'vip'; allowed: strategic, key, general, potential",
        ),
        (
            {"rules": [{"action": "x", "stages": ["churned"]}, {"action": "y"}]},
            r"playbook\.rules\[0\]\.stages: unknown value 'churned'; allowed: prospect, new, active",
        ),
        (
            {"rules": [{"action": "x"}, {"action": "y", "stages": ["new"]}]},
            r"playbook\.rules: the last rule must have no conditions",
        ),
        (
            {"rules": [{"action": "Call Them"}]},
            r"playbook\.rules\[0\]\.action must be a lower-case name",
        ),
        ({"rules": [{"tiers": ["key"]}]}, r"playbook\.rules\[0\]\.action is required"),
        (
            {"rules": [{"action": "x", "when": "always"}]},
            r"playbook\.rules\[0\]\.when is not a known setting; allowed: action, tiers",
        ),
        (
            {"rules": [{"action": "x", "order_due_within_days": -1}, {"action": "y"}]},
            r"playbook\.rules\[0\]\.order_due_within_days must be between 0 and",
        ),
        ({"rules": []}, r"playbook\.rules must be a non-empty list"),
        ({"actions": []}, r"playbook\.actions is not a known setting"),
    ],
)
def test_invalid_playbook_raises_naming_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        Playbook.from_dict(config)


# --------------------------------------------------------------------------- all together


def test_segment_customers_adds_tier_stage_and_action_one_row_per_customer():
    customers = pl.DataFrame(
        {
            "customer_id": ["whale", "fading", "fresh", "nobody"],
            "has_completed_order": [True, True, True, False],
            "revenue_total": [5000.0, 800.0, 20.0, None],
            "recency_days": [3, 120, 4, None],
            "first_purchase_at": [LONG_AGO, LONG_AGO, datetime(2024, 6, 26), None],
            "average_gap_days": [10.0, 30.0, None, None],
            "last_gap_days": [12.0, 25.0, None, None],
            "predicted_clv": [900.0, 50.0, 30.0, None],
            "p_alive": [0.99, 0.2, 1.0, None],
            "churn_probability": [None, None, None, None],
            "rfm_segment": ["champions", "at_risk", "new_customers", None],
            "expected_next_order_date": [AS_OF + timedelta(days=5), None, None, None],
        },
        schema_overrides={"churn_probability": pl.Float64},
    )
    out = segment_customers(customers, as_of=AS_OF)
    assert out.columns == [
        *customers.columns,
        "value_tier",
        "lifecycle_stage",
        "recommended_action",
    ]
    assert out.select(
        "customer_id", "value_tier", "lifecycle_stage", "recommended_action"
    ).rows() == [
        ("whale", "strategic", "active", "vip_care"),
        ("fading", "key", "at_risk", "personal_call_account_manager"),
        ("fresh", "general", "new", "onboarding"),
        ("nobody", "potential", "prospect", "first_purchase_offer"),
    ]
