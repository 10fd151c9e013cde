"""Value tiers, lifecycle stages and recommended actions.

Pure Polars functions on a per-customer frame (one row per customer in the master, buyers or
not). The business rules are data: frozen dataclasses with defaults, each with a
``from_dict(d, key)`` that validates a config table and names the offending key.

Input columns (nullable ones may also be absent, which means all null):

=========================  ==========  ====================================================
column                     type        meaning
=========================  ==========  ====================================================
customer_id                String      customer
has_completed_order        Boolean     at least one completed order on or before as_of
revenue_total              Float64     gross revenue (models.rfm); null for prospects
recency_days               Int64       days since the last completed order; null for prospects
first_purchase_at          Datetime    first completed order; null for prospects
average_gap_days           Float64     mean days between completed orders (models.rfm); null
                                       with fewer than two orders
last_gap_days              Float64     days between the last two completed orders (models.rfm)
predicted_clv              Float64     nullable: CLV over the configured horizon
p_alive                    Float64     nullable: BG/NBD P(alive)
churn_probability          Float64     nullable: churn model
rfm_segment                String      nullable: models.rfm segment
expected_next_order_date   Date        nullable: from the CLV predictions
=========================  ==========  ====================================================

:func:`segment_customers` adds value_tier, lifecycle_stage and recommended_action.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date

import polars as pl

from models.rfm import DEFAULT_RFM_GRID

__all__ = [
    "DEFAULT_PLAYBOOK",
    "LIFECYCLE_STAGES",
    "VALUE_TIERS",
    "LifecycleRules",
    "Playbook",
    "PlaybookRule",
    "TierRules",
    "assign_lifecycle_stages",
    "assign_value_tiers",
    "recommend_actions",
    "segment_customers",
]

VALUE_TIERS = ("strategic", "key", "general", "potential")
LIFECYCLE_STAGES = ("prospect", "new", "active", "at_risk", "lapsed", "reactivated")
_OPTIONAL_COLUMNS = {
    "predicted_clv": pl.Float64,
    "p_alive": pl.Float64,
    "churn_probability": pl.Float64,
    "rfm_segment": pl.String,
    "expected_next_order_date": pl.Date,
    "average_gap_days": pl.Float64,
    "last_gap_days": pl.Float64,
}


# --------------------------------------------------------------------------- config helpers


def _check_keys(d, key: str, allowed: Sequence[str]) -> None:
    if not isinstance(d, Mapping):
        raise ValueError(f"{key} must be a table, got {type(d).__name__}")
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise ValueError(
            f"{key}.{unknown[0]} is not a known setting; allowed: {', '.join(allowed)}"
        )


def _number(value, key: str, *, low: float, high: float, integer: bool = False):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if (
        isinstance(value, bool)
        or not ok_type
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{key} must be {kind}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low:g} and {high:g}, got {value!r}")
    return value


def _from_dict(cls, d, key: str, checks: Mapping[str, dict]):
    names = [f.name for f in fields(cls)]
    _check_keys(d, key, names)
    values = {
        name: _number(d[name], f"{key}.{name}", **checks[name]) for name in names if name in d
    }
    return cls(**values)


# --------------------------------------------------------------------------- value tiers


@dataclass(frozen=True)
class TierRules:
    """Value tiers.

    - potential: no completed order (in the customer master only);
    - strategic: the top ``strategic_share`` (default 5%) of active buyers by value;
    - key: the next ``key_share`` (default 15%);
    - general: every other buyer, active or not.

    An active buyer has a completed order within ``active_within_days`` (default 365) of as_of;
    a recency rule keeps tiers stable whether or not the CLV models ran.

    Value is predicted_clv when every active buyer has one, otherwise revenue_total for all of
    them (CLV and historical revenue are on different scales, so they are never mixed in one
    ranking). Tier sizes are ceil(share x active buyers) each (capped at the number of active
    buyers); ties are broken by customer_id, so the result does not depend on row order.
    """

    strategic_share: float = 0.05
    key_share: float = 0.15
    active_within_days: int = 365

    def __post_init__(self):
        _validate_tiers(self, "tiers")

    @classmethod
    def from_dict(cls, d: Mapping, key: str = "tiers") -> TierRules:
        """Build from a config table, e.g. ``{"strategic_share": 0.05}``; missing keys keep defaults."""
        rules = _from_dict(
            cls,
            d,
            key,
            {
                "strategic_share": {"low": 0, "high": 1},
                "key_share": {"low": 0, "high": 1},
                "active_within_days": {"low": 0, "high": 36500, "integer": True},
            },
        )
        _validate_tiers(rules, key)
        return rules


def _validate_tiers(rules: TierRules, key: str) -> None:
    for name in ("strategic_share", "key_share"):
        value = getattr(rules, name)
        if not 0 <= value <= 1:
            raise ValueError(f"{key}.{name} must be between 0 and 1, got {value}")
    if rules.strategic_share + rules.key_share > 1:
        raise ValueError(
            f"{key}.strategic_share + {key}.key_share must be at most 1, "
            f"got {rules.strategic_share} + {rules.key_share}"
        )


# --------------------------------------------------------------------------- lifecycle


@dataclass(frozen=True)
class LifecycleRules:
    """Lifecycle stages, decided in this order (first match wins):

    1. prospect: no completed order;
    2. new: first completed order within ``new_within_days`` (90) of as_of;
    3. reactivated: ordered within ``reactivated_within_days`` (90) after a gap between the last
       two orders longer than ``lapsed_after_days``;
    4. lapsed: no completed order for more than ``lapsed_after_days`` (365);
    5. at_risk: churn_probability >= ``at_risk_churn_probability`` (0.7) where the churn model
       scored the customer; otherwise any of p_alive < ``at_risk_p_alive`` (0.5),
       recency_days > ``at_risk_gap_multiple`` (2) x average_gap_days, or, for customers
       with a single order, recency_days > ``at_risk_after_days`` (180) (the BG/NBD gives
       one-time buyers p_alive = 1, so they need this rule);
    6. active: everyone else.
    """

    new_within_days: int = 90
    lapsed_after_days: int = 365
    reactivated_within_days: int = 90
    at_risk_churn_probability: float = 0.7
    at_risk_p_alive: float = 0.5
    at_risk_gap_multiple: float = 2.0
    at_risk_after_days: int = 180

    @classmethod
    def from_dict(cls, d: Mapping, key: str = "lifecycle") -> LifecycleRules:
        """Build from a config table; missing keys keep defaults."""
        days = {"low": 0, "high": 36500, "integer": True}
        return _from_dict(
            cls,
            d,
            key,
            {
                "new_within_days": days,
                "lapsed_after_days": days,
                "reactivated_within_days": days,
                "at_risk_churn_probability": {"low": 0, "high": 1},
                "at_risk_p_alive": {"low": 0, "high": 1},
                "at_risk_gap_multiple": {"low": 0, "high": 1000},
                "at_risk_after_days": days,
            },
        )


# --------------------------------------------------------------------------- playbook


_ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RULE_KEYS = ("action", "tiers", "stages", "segments", "order_due_within_days")


@dataclass(frozen=True)
class PlaybookRule:
    """``action`` for customers matching every given condition (None = any).

    tiers / stages / segments: allowed value_tier / lifecycle_stage / rfm_segment values;
    order_due_within_days: expected_next_order_date is at most this many days after as_of.
    """

    action: str
    tiers: tuple[str, ...] | None = None
    stages: tuple[str, ...] | None = None
    segments: tuple[str, ...] | None = None
    order_due_within_days: int | None = None

    @property
    def is_default(self) -> bool:
        conditions = (self.tiers, self.stages, self.segments, self.order_due_within_days)
        return all(condition is None for condition in conditions)


_DEFAULT_PLAYBOOK_RULES = (
    PlaybookRule("personal_call_account_manager", tiers=("strategic", "key"), stages=("at_risk",)),
    PlaybookRule("win_back_offer", stages=("lapsed",)),
    PlaybookRule("retention_offer", stages=("at_risk",)),
    PlaybookRule("onboarding", stages=("new",)),
    PlaybookRule("welcome_back", stages=("reactivated",)),
    PlaybookRule("vip_care", segments=("champions",)),
    PlaybookRule("reorder_reminder", order_due_within_days=14),
    PlaybookRule("first_purchase_offer", stages=("prospect",)),
    PlaybookRule("nurture"),
)


@dataclass(frozen=True)
class Playbook:
    """Ordered rules mapping tier x stage x segment (x due order) to a recommended action.

    The first matching rule wins; the last rule must have no conditions (the default action),
    so every customer gets one. Defaults, in order::

        personal_call_account_manager  tiers strategic, key and stage at_risk
        win_back_offer                 stage lapsed
        retention_offer                stage at_risk
        onboarding                     stage new
        welcome_back                   stage reactivated
        vip_care                       segment champions
        reorder_reminder               expected next order within 14 days
        first_purchase_offer           stage prospect
        nurture                        everyone else
    """

    rules: tuple[PlaybookRule, ...] = _DEFAULT_PLAYBOOK_RULES

    def __post_init__(self):
        # segment names depend on the configured RFM grid; from_dict checks them against it
        _validate_playbook(self.rules, "playbook", None)

    @classmethod
    def from_dict(
        cls,
        d: Mapping,
        key: str = "playbook",
        *,
        segments: Sequence[str] = DEFAULT_RFM_GRID.segments,
    ) -> Playbook:
        """Build from a config table ``{"rules": [{action = ..., tiers = [...], ...}, ...]}``.

        The rules replace the default playbook. ``segments`` are the allowed rfm_segment names
        (pass ``RfmGrid.segments`` when the grid is configured too). Raises ValueError naming
        the key, e.g. ``playbook.rules[2].tiers: unknown value 'vip'; allowed: strategic, ...``.
        """
        _check_keys(d, key, ("rules",))
        raw = d.get("rules")
        if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
            raise ValueError(f"{key}.rules must be a non-empty list of rules")
        rules = []
        for index, item in enumerate(raw):
            item_key = f"{key}.rules[{index}]"
            _check_keys(item, item_key, _RULE_KEYS)
            if "action" not in item:
                raise ValueError(f"{item_key}.action is required")
            due = item.get("order_due_within_days")
            if due is not None:
                _number(due, f"{item_key}.order_due_within_days", low=0, high=36500, integer=True)
            rules.append(
                PlaybookRule(
                    action=item["action"],
                    tiers=_names(item, "tiers", item_key),
                    stages=_names(item, "stages", item_key),
                    segments=_names(item, "segments", item_key),
                    order_due_within_days=due,
                )
            )
        _validate_playbook(rules, key, segments)
        return cls(tuple(rules))


def _names(item: Mapping, name: str, key: str) -> tuple[str, ...] | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}.{name} must be a non-empty list of names, got {value!r}")
    return tuple(value)


def _validate_playbook(
    rules: Sequence[PlaybookRule], key: str, segments: Sequence[str] | None
) -> None:
    if not rules:
        raise ValueError(f"{key}.rules must not be empty")
    allowed = {"tiers": VALUE_TIERS, "stages": LIFECYCLE_STAGES}
    if segments is not None:
        allowed["segments"] = tuple(segments)
    for index, rule in enumerate(rules):
        rule_key = f"{key}.rules[{index}]"
        if not isinstance(rule.action, str) or not _ACTION_NAME.match(rule.action):
            raise ValueError(
                f"{rule_key}.action must be a lower-case name of letters, digits and _, got {rule.action!r}"
            )
        for name, values in allowed.items():
            for value in getattr(rule, name) or ():
                if value not in values:
                    raise ValueError(
                        f"{rule_key}.{name}: unknown value {value!r}; allowed: {', '.join(values)}"
                    )
    if not rules[-1].is_default:
        raise ValueError(
            f"{key}.rules: the last rule must have no conditions (the default action), "
            f"got conditions on {rules[-1].action!r}"
        )


DEFAULT_PLAYBOOK = Playbook()


# --------------------------------------------------------------------------- frame functions


def _prepare(customers: pl.DataFrame, required: Sequence[str]) -> pl.DataFrame:
    missing = [c for c in required if c not in customers.columns]
    if missing:
        raise ValueError(f"customers lacks column(s) {', '.join(missing)}")
    absent = {
        name: dtype for name, dtype in _OPTIONAL_COLUMNS.items() if name not in customers.columns
    }
    return customers.with_columns(
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in absent.items()
    )


def assign_value_tiers(customers: pl.DataFrame, *, rules: TierRules = TierRules()) -> pl.DataFrame:
    """Add value_tier (strategic, key, general, potential); see :class:`TierRules`.

    One row per input row, same order. Requires customer_id, has_completed_order,
    recency_days, revenue_total; uses predicted_clv when present.
    """
    frame = _prepare(
        customers, ("customer_id", "has_completed_order", "recency_days", "revenue_total")
    )
    is_active = pl.col("has_completed_order") & (pl.col("recency_days") <= rules.active_within_days)
    active = frame.filter(is_active)
    use_clv = active.height > 0 and active.get_column("predicted_clv").null_count() == 0
    value = pl.col("predicted_clv" if use_clv else "revenue_total").fill_null(0.0)
    n_active = active.height
    # tier sizes: ceil(share x n) each, so a tier with a share gets someone even among few buyers;
    # the epsilon keeps 0.05 x 100 from becoming 6 through rounding
    n_strategic = min(n_active, math.ceil(rules.strategic_share * n_active - 1e-9))
    n_top = min(n_active, n_strategic + math.ceil(rules.key_share * n_active - 1e-9))
    ranked = (
        frame.with_row_index("_row")
        .with_columns(is_active.fill_null(False).alias("_active"), value.alias("_value"))
        .sort(["_active", "_value", "customer_id"], descending=[True, True, False], nulls_last=True)
        .with_columns(pl.int_range(1, pl.len() + 1).alias("_position"))
        .with_columns(
            pl.when(~pl.col("has_completed_order").fill_null(False))
            .then(pl.lit("potential"))
            .when(pl.col("_active") & (pl.col("_position") <= n_strategic))
            .then(pl.lit("strategic"))
            .when(pl.col("_active") & (pl.col("_position") <= n_top))
            .then(pl.lit("key"))
            .otherwise(pl.lit("general"))
            .alias("value_tier")
        )
        .sort("_row")
    )
    return ranked.drop("_row", "_active", "_value", "_position").select(
        *customers.columns, "value_tier"
    )


def assign_lifecycle_stages(
    customers: pl.DataFrame, *, as_of: date, rules: LifecycleRules = LifecycleRules()
) -> pl.DataFrame:
    """Add lifecycle_stage (prospect, new, active, at_risk, lapsed, reactivated); see :class:`LifecycleRules`.

    One row per input row, same order. Requires customer_id, has_completed_order,
    recency_days, first_purchase_at; uses average_gap_days, last_gap_days, p_alive and
    churn_probability when present.
    """
    frame = _prepare(
        customers, ("customer_id", "has_completed_order", "recency_days", "first_purchase_at")
    )
    recency = pl.col("recency_days")
    tenure_days = (pl.lit(as_of) - pl.col("first_purchase_at").cast(pl.Date)).dt.total_days()
    by_churn_model = pl.col("churn_probability") >= rules.at_risk_churn_probability
    by_p_alive = (pl.col("p_alive") < rules.at_risk_p_alive).fill_null(False)
    by_gap = (recency > rules.at_risk_gap_multiple * pl.col("average_gap_days")).fill_null(False)
    by_single_order = pl.col("average_gap_days").is_null() & (recency > rules.at_risk_after_days)
    at_risk = (
        pl.when(pl.col("churn_probability").is_not_null())
        .then(by_churn_model)
        .otherwise(by_p_alive | by_gap | by_single_order)
    )
    stage = (
        pl.when(~pl.col("has_completed_order").fill_null(False))
        .then(pl.lit("prospect"))
        .when(tenure_days <= rules.new_within_days)
        .then(pl.lit("new"))
        .when(
            (recency <= rules.reactivated_within_days)
            & (pl.col("last_gap_days") > rules.lapsed_after_days).fill_null(False)
        )
        .then(pl.lit("reactivated"))
        .when(recency > rules.lapsed_after_days)
        .then(pl.lit("lapsed"))
        .when(at_risk)
        .then(pl.lit("at_risk"))
        .otherwise(pl.lit("active"))
    )
    return frame.with_columns(stage.alias("lifecycle_stage")).select(
        *customers.columns, "lifecycle_stage"
    )


def recommend_actions(
    customers: pl.DataFrame, *, as_of: date, playbook: Playbook = DEFAULT_PLAYBOOK
) -> pl.DataFrame:
    """Add recommended_action: the action of the first playbook rule the customer matches.

    One row per input row, same order. Requires customer_id, value_tier, lifecycle_stage;
    uses rfm_segment and expected_next_order_date when present (null never matches).
    """
    frame = _prepare(customers, ("customer_id", "value_tier", "lifecycle_stage"))
    days_to_next_order = (pl.col("expected_next_order_date") - pl.lit(as_of)).dt.total_days()
    expression = None
    for rule in playbook.rules:
        conditions = [pl.lit(True)]
        if rule.tiers is not None:
            conditions.append(pl.col("value_tier").is_in(list(rule.tiers)))
        if rule.stages is not None:
            conditions.append(pl.col("lifecycle_stage").is_in(list(rule.stages)))
        if rule.segments is not None:
            conditions.append(pl.col("rfm_segment").is_in(list(rule.segments)))
        if rule.order_due_within_days is not None:
            conditions.append(days_to_next_order <= rule.order_due_within_days)
        condition = pl.all_horizontal(conditions).fill_null(False)
        expression = (
            pl.when(condition) if expression is None else expression.when(condition)
        ).then(pl.lit(rule.action))
    action = expression.otherwise(pl.lit(None, dtype=pl.String))
    return frame.with_columns(action.alias("recommended_action")).select(
        *customers.columns, "recommended_action"
    )


def segment_customers(
    customers: pl.DataFrame,
    *,
    as_of: date,
    tiers: TierRules = TierRules(),
    lifecycle: LifecycleRules = LifecycleRules(),
    playbook: Playbook = DEFAULT_PLAYBOOK,
) -> pl.DataFrame:
    """Add value_tier, lifecycle_stage and recommended_action; one row per input row, same order."""
    tiered = assign_value_tiers(customers, rules=tiers)
    staged = assign_lifecycle_stages(tiered, as_of=as_of, rules=lifecycle)
    return recommend_actions(staged, as_of=as_of, playbook=playbook)
