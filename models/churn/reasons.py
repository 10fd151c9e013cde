"""Churn reasons: the top three drivers of each customer's churn score, as short phrases
marketing can read ("no order for 140 days, usually every 30; two complaints in the last
90 days").

How a driver is measured (``model_contributions``): the features are grouped by what they
say about the customer (recency, frequency, spend, complaints, ...; ``REASON_GROUPS``), and a
group's contribution is the drop in the booster's raw log-odds (``decision_function`` of the
uncalibrated ``HistGradientBoostingClassifier``, before the calibration step) when the
whole group is set to the reference customer's values: the feature-wise medians (most common
category) of the customers in the model's own training set who bought again (a "typical
customer who came back"). Features that say the same thing (days since the last order, its
ratio to the usual gap, orders in the last 90 days) are replaced together, so that one
driver is not split over, or hidden by, its near-copies. This is occlusion against a fixed
reference, not TreeSHAP: the contributions need not add up to the score, but each one is
exactly what the customer's own values in that group add to the log-odds over the
reference's, with everything else about the customer kept. Calibration is monotone, so a
group that raises the log-odds raises the published probability. ``shap`` was not used: it
would add numba and llvmlite to the locks for an explanation of the same trees.

Only groups that push the risk up (contribution > 0) are reasons. When the published score
is a baseline, the reason is the baseline's own driver (recency: "no order for 140 days,
usually every 30"; P(no purchase), driven by the same two numbers: that phrase and "84%
chance of no order in the next 90 days (purchase-pattern model)").

Reasons are given for the medium and high bands and are NULL for the low band: a low-risk
customer has nothing to win back, and a "reason" for a risk that is low reads as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import polars as pl

MAX_REASONS = 3
REASON_SEPARATOR = "; "

# group: the features it holds. Every feature of sql/models/churn_features.sql and the
# customer-base model's columns belongs to exactly one group (a unit test checks it).
REASON_GROUPS: Mapping[str, tuple[str, ...]] = {
    "recency": (
        "days_since_last_order",
        "recency_gap_ratio",
        "gap_mean_days",
        "gap_std_days",
        "orders_last_30d",
        "orders_last_90d",
    ),
    "frequency": ("order_count", "orders_last_180d", "days_since_first_order"),
    "spend": (
        "revenue_total",
        "order_value_mean",
        "revenue_last_90d",
        "revenue_last_180d",
        "spend_trend_90d",
        "spend_trend_180d",
    ),
    "returns": ("return_refund_share",),
    "engagement": (
        "page_view_events_last_30d",
        "page_view_events_last_90d",
        "page_view_events_last_180d",
        "email_open_events_last_30d",
        "email_open_events_last_90d",
        "email_open_events_last_180d",
        "email_click_events_last_30d",
        "email_click_events_last_90d",
        "email_click_events_last_180d",
        "days_since_last_event",
        "email_click_to_open_rate",
    ),
    "complaints": (
        "complaint_count",
        "complaint_events_last_30d",
        "complaint_events_last_90d",
        "complaint_events_last_180d",
    ),
    "support": (
        "support_ticket_count",
        "support_ticket_events_last_30d",
        "support_ticket_events_last_90d",
        "support_ticket_events_last_180d",
        "support_response_hours_mean",
        "support_response_hours_last",
    ),
    "satisfaction": (
        "nps_last",
        "csat_last",
        "survey_response_events_last_30d",
        "survey_response_events_last_90d",
        "survey_response_events_last_180d",
    ),
    "profile": ("age_years", "country", "gender", "marketing_consent"),
    "purchase_pattern": ("p_alive", "expected_purchases", "p_no_purchase"),
}

# the published baseline scorer: the group whose phrase is its reason
BASELINE_REASON_GROUP = {
    "recency": "recency",
    "fallback_recency_rank": "recency",
    "p_no_purchase": "purchase_pattern",
    "fallback_p_no_purchase": "purchase_pattern",
}

_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _count(n: float, singular: str, plural: str | None = None) -> str:
    """'two complaints', 'one order', '14 orders'."""
    n = int(round(n))
    word = _WORDS[n] if 0 <= n < len(_WORDS) else f"{n:,}"
    return f"{word} {singular if n == 1 else (plural or singular + 's')}"


def _value(row: Mapping, name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(value) else value


def _phrase_recency(row: Mapping, horizon_days: int) -> str | None:
    days = _value(row, "days_since_last_order")
    if days is None:
        return None
    gap = _value(row, "gap_mean_days")
    if gap is None:
        return f"no order for {days:.0f} days, and only one order so far"
    return f"no order for {days:.0f} days, usually every {max(gap, 1):.0f}"


def _phrase_frequency(row: Mapping, horizon_days: int) -> str | None:
    orders = _value(row, "order_count")
    tenure = _value(row, "days_since_first_order")
    if orders is None or tenure is None:
        return None
    if orders <= 1:
        return f"a single order, {tenure:.0f} days ago"
    return f"{_count(orders, 'order')} in {tenure:.0f} days"


def _phrase_spend(row: Mapping, horizon_days: int) -> str | None:
    for name, window in (("spend_trend_90d", 90), ("spend_trend_180d", 180)):
        trend = _value(row, name)
        if trend is not None and trend <= 0:
            return f"nothing spent in the last {window} days"
        if trend is not None and trend < 1:
            return f"spending down {100 * (1 - trend):.0f}% in the last {window} days"
    mean = _value(row, "order_value_mean")
    if mean is None:
        return None
    return f"small orders: {mean:,.2f} on average"


def _phrase_returns(row: Mapping, horizon_days: int) -> str | None:
    share = _value(row, "return_refund_share")
    if share is None:
        return None
    if share <= 0:
        return "no returns or refunds"
    return f"{100 * share:.0f}% of orders returned or refunded"


def _phrase_engagement(row: Mapping, horizon_days: int) -> str | None:
    days = _value(row, "days_since_last_event")
    if days is None:
        return "no site or e-mail activity recorded"
    opens = _value(row, "email_open_events_last_90d") or 0
    views = _value(row, "page_view_events_last_90d") or 0
    if opens == 0 and views == 0:
        return f"no site visit or e-mail opened for {days:.0f} days"
    return (
        f"{_count(views, 'site visit')} and {_count(opens, 'e-mail opened', 'e-mails opened')} "
        "in the last 90 days"
    )


def _phrase_complaints(row: Mapping, horizon_days: int) -> str | None:
    recent = _value(row, "complaint_events_last_90d") or 0
    total = _value(row, "complaint_count") or 0
    if recent > 0:
        return f"{_count(recent, 'complaint')} in the last 90 days"
    if total > 0:
        return f"{_count(total, 'complaint')} so far"
    return "no complaint on record"


def _phrase_support(row: Mapping, horizon_days: int) -> str | None:
    recent = _value(row, "support_ticket_events_last_90d") or 0
    total = _value(row, "support_ticket_count") or 0
    hours = _value(row, "support_response_hours_last")
    wait = f", the last answered after {hours:.0f} hours" if hours is not None else ""
    if recent > 0:
        return f"{_count(recent, 'support ticket')} in the last 90 days{wait}"
    if total > 0:
        return f"{_count(total, 'support ticket')} so far{wait}"
    return "no support ticket on record"


def _phrase_satisfaction(row: Mapping, horizon_days: int) -> str | None:
    parts = []
    nps = _value(row, "nps_last")
    csat = _value(row, "csat_last")
    if nps is not None:
        parts.append(f"last NPS answer {nps:.0f}")
    if csat is not None:
        parts.append(f"last CSAT answer {csat:.0f}")
    return ", ".join(parts) if parts else "no survey answer"


def _phrase_profile(row: Mapping, horizon_days: int) -> str | None:
    parts = []
    age = _value(row, "age_years")
    if age is not None:
        parts.append(f"age {age:.0f}")
    if row.get("country"):
        parts.append(f"country {row['country']}")
    if row.get("marketing_consent") is False:
        parts.append("no marketing consent")
    return "profile: " + ", ".join(parts) if parts else None


def _phrase_purchase_pattern(row: Mapping, horizon_days: int) -> str | None:
    p_none = _value(row, "p_no_purchase")
    if p_none is not None:
        return (
            f"{100 * p_none:.0f}% chance of no order in the next {horizon_days} days "
            "(purchase-pattern model)"
        )
    p_alive = _value(row, "p_alive")
    if p_alive is not None:
        return (
            f"{100 * (1 - p_alive):.0f}% chance of having stopped buying (purchase-pattern model)"
        )
    return None


_PHRASES = {
    "recency": _phrase_recency,
    "frequency": _phrase_frequency,
    "spend": _phrase_spend,
    "returns": _phrase_returns,
    "engagement": _phrase_engagement,
    "complaints": _phrase_complaints,
    "support": _phrase_support,
    "satisfaction": _phrase_satisfaction,
    "profile": _phrase_profile,
    "purchase_pattern": _phrase_purchase_pattern,
}


def reason_phrase(group: str, row: Mapping, horizon_days: int) -> str | None:
    """The phrase for one reason group from one customer's feature values (a mapping of
    feature name to value; days in days, amounts in currency units, shares 0 to 1), or None
    when the values it needs are unknown."""
    return _PHRASES[group](row, horizon_days)


def _groups_of(features: Sequence[str]) -> dict[str, list[str]]:
    """The reason groups present among ``features``, each with its features there."""
    present = {}
    for group, members in REASON_GROUPS.items():
        used = [name for name in members if name in features]
        if used:
            present[group] = used
    return present


def reference_values(
    encoded: pd.DataFrame, labels: np.ndarray, categorical: Sequence[str]
) -> pd.Series:
    """The reference customer of ``model_contributions``: for each encoded column, over the
    training customers who bought again (label 0), the median (numbers) or the most common
    code (categorical columns), or NaN where most of them have no value.

    Parameters
    ----------
    encoded : pandas.DataFrame
        The training features as the booster sees them (after the encoder).
    labels : numpy.ndarray
        0/1 per row, 1 = churned.
    categorical : column names holding category codes.
    """
    retained = encoded[np.asarray(labels) == 0]
    values = {}
    for name in encoded.columns:
        column = pd.to_numeric(retained[name], errors="coerce")
        known = column.dropna()
        if len(known) * 2 < len(column) or known.empty:
            values[name] = np.nan
        elif name in categorical:
            values[name] = float(known.mode().iloc[0])
        else:
            values[name] = float(known.median())
    return pd.Series(values, dtype=float)


def model_contributions(
    booster, encoded: pd.DataFrame, reference: pd.Series
) -> dict[str, np.ndarray]:
    """Per reason group, what the customer's own values add to the booster's log-odds of
    churn over the reference customer's.

    Parameters
    ----------
    booster : fitted HistGradientBoostingClassifier (uncalibrated)
    encoded : pandas.DataFrame
        The customers' features after the model's encoder (the booster's input).
    reference : pandas.Series
        Encoded reference value per column (``reference_values``).

    Returns
    -------
    dict group -> numpy.ndarray of log-odds (one per row): the booster's raw score minus
    its score with the group's columns set to the reference values; > 0 = the group
    raises the risk.
    """
    base = booster.decision_function(encoded)
    contributions = {}
    for group, columns in _groups_of(list(encoded.columns)).items():
        replaced = encoded.copy()
        for name in columns:
            replaced[name] = reference[name]
        contributions[group] = base - booster.decision_function(replaced)
    return contributions


def compose_reasons(
    features: pl.DataFrame,
    contributions: Mapping[str, np.ndarray],
    horizon_days: int,
    max_reasons: int = MAX_REASONS,
) -> list[str | None]:
    """Per row of ``features``, the phrases of the (at most ``max_reasons``) groups with the
    largest positive contributions, largest first, joined with "; "; None where no group
    raises the risk or none has a phrase."""
    groups = list(contributions)
    if not groups:
        return [None] * features.height
    matrix = np.column_stack([np.asarray(contributions[g], dtype=float) for g in groups])
    rows = features.to_dicts()
    reasons: list[str | None] = []
    for row, values in zip(rows, matrix, strict=True):
        phrases = []
        for index in np.argsort(-values, kind="stable"):
            if values[index] <= 0 or len(phrases) == max_reasons:
                break
            phrase = reason_phrase(groups[index], row, horizon_days)
            if phrase:
                phrases.append(phrase)
        reasons.append(REASON_SEPARATOR.join(phrases) if phrases else None)
    return reasons


def churn_reasons(
    scorer,
    published_scorer: str,
    features: pl.DataFrame,
    bands: Sequence[str | None],
    horizon_days: int,
) -> list[str | None]:
    """The ``churn_reasons`` of each customer: up to three phrases joined with "; ".

    Parameters
    ----------
    scorer : ChurnModel, BaselineChurnModel or None
        The published scorer (None after a fallback).
    published_scorer : str
        ``ChurnResult.published_scorer``: "model", a baseline or a fallback name.
    features : polars.DataFrame
        The features the scores were computed from, one row per customer, in order.
    bands : churn_band per row; reasons only for "medium" and "high".
    horizon_days : int
        The churn horizon H in days (for the purchase-pattern phrase).

    Returns
    -------
    list of str or None, one per row.
    """
    bands = list(bands)
    explain = np.array([band in ("medium", "high") for band in bands], dtype=bool)
    reasons: list[str | None] = [None] * features.height
    if not explain.any():
        return reasons
    rows = np.flatnonzero(explain)
    subset = features[rows]
    if published_scorer == "model":
        contributions = scorer.reason_contributions(subset)
        found = compose_reasons(subset, contributions, horizon_days)
    elif published_scorer in BASELINE_REASON_GROUP:
        group = BASELINE_REASON_GROUP[published_scorer]
        found = []
        for row in subset.to_dicts():
            # P(no purchase) is driven by the time since the last order against the usual
            # gap: that phrase first, then the probability; a customer the customer-base
            # model does not cover was ranked by recency (the fallback) and gets that alone
            phrases = [reason_phrase("recency", row, horizon_days)]
            if group == "purchase_pattern":
                phrases.append(reason_phrase(group, row, horizon_days))
            phrases = [phrase for phrase in phrases if phrase]
            found.append(REASON_SEPARATOR.join(phrases) if phrases else None)
    else:
        return reasons
    for index, phrase in zip(rows, found, strict=True):
        reasons[index] = phrase
    return reasons
