"""The Great Expectations rules of each source's suite, and the constants they use.

One suite per source, derived from the canonical contract. Each expectation is a named
rule with a severity:

- ``row``: the row cannot be used (no customer, no parseable timestamp or amount, a
  score out of range). It goes to ``quarantine.<source>`` with every rule it broke and
  its original values, and is left out of ``core``.
- ``field``: one optional profile field is wrong (an e-mail without an @, a birth date
  that does not parse). The row is kept, that field is blanked, and the original value
  is kept in ``quarantine.field_issues``.

Every suite ends with a canary expectation that must fail, so a suite that silently
passes everything is caught (``pipelines/load/quality.py`` runs the suites).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipelines.config import Settings

CANARY_RULE = "canary_must_fail"
STATUSES = ("completed", "cancelled", "refunded", "returned")
# Control characters (NUL, escape, ...) are never part of a name or a city; they come from
# broken exports and would reach the marketing files. Tab and line breaks are left to the
# CSV writer's quoting.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# An amount of ten billion or more in one line is a broken export (a quantity or a price
# in the wrong column), never a sale; it would also overflow the staging decimals.
MAX_LINE_AMOUNT = 1e10
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


@dataclass(frozen=True)
class Rule:
    """A named expectation: ``kind`` is a GX expectation class name, ``column`` the staged
    column it checks (and blanks, for field rules), ``kwargs`` its arguments."""

    name: str
    kind: str
    column: str | None
    severity: str  # row | field | canary
    kwargs: tuple[tuple[str, Any], ...] = ()
    only_if_present: str | None = None  # text column that must be non-null for the check

    @property
    def field(self) -> str | None:
        """The canonical field the rule is about (rule names start with it)."""
        for suffix in (
            "_present",
            "_parseable",
            "_not_before_earliest_date",
            "_not_after_ingestion",
            "_numeric",
            "_known",
            "_shape",
            "_valid",
            "_plausible",
            "_score_in_range",
            "_convertible",
            "_printable",
        ):
            if self.name.endswith(suffix):
                field = self.name[: -len(suffix)]
                return {"nps": "value", "csat": "value"}.get(field, field)
        return None


def suite_rules(source: str, settings: Settings) -> list[Rule]:
    """The rules of one source's suite, in the order they are reported."""
    earliest = datetime.combine(settings.validation.earliest_date, datetime.min.time())

    def present(col: str) -> Rule:
        return Rule(f"{col}_present", "ExpectColumnValuesToNotBeNull", col, "row")

    def ts_rules(col: str, field: str) -> list[Rule]:
        return [
            Rule(f"{field}_parseable", "ExpectColumnValuesToNotBeNull", col, "row"),
            Rule(
                f"{field}_not_before_earliest_date",
                "ExpectColumnValuesToBeBetween",
                col,
                "row",
                (("min_value", earliest),),
            ),
            Rule(
                f"{field}_not_after_ingestion",
                "ExpectColumnPairValuesAToBeGreaterThanB",
                None,
                "row",
                (
                    ("column_A", "_ingested_at"),
                    ("column_B", col),
                    ("or_equal", True),
                    ("ignore_row_if", "either_value_is_missing"),
                ),
            ),
        ]

    def not_after_ingestion(col: str, field: str) -> Rule:
        # Against the row's own ingestion time, not today: a file's verdicts must not
        # change with the day they are computed on, so that they are computed once.
        return Rule(
            f"{field}_not_after_ingestion",
            "ExpectColumnPairValuesAToBeGreaterThanB",
            col,
            "field",
            (
                ("column_A", "_ingested_at"),
                ("column_B", col),
                ("or_equal", True),
                ("ignore_row_if", "either_value_is_missing"),
            ),
        )

    def numeric(col: str, severity: str = "row") -> Rule:
        return Rule(
            f"{col}_numeric",
            "ExpectColumnValuesToNotBeNull",
            col,
            severity,
            only_if_present=f"{col}_text",
        )

    if source == "transactions":
        rules = [
            present("customer_id"),
            *ts_rules("order_at", "order_ts"),
            Rule("amount_numeric", "ExpectColumnValuesToNotBeNull", "amount_in_currency", "row"),
            Rule(
                "amount_plausible",
                "ExpectColumnValuesToBeBetween",
                "amount_in_currency",
                "row",
                (
                    ("min_value", -MAX_LINE_AMOUNT),
                    ("max_value", MAX_LINE_AMOUNT),
                    ("strict_min", True),
                    ("strict_max", True),
                ),
            ),
            numeric("quantity"),
            numeric("unit_price"),
            Rule(
                "status_known",
                "ExpectColumnValuesToBeInSet",
                "status",
                "row",
                (("value_set", list(STATUSES)),),
            ),
            Rule(
                "currency_convertible",
                "ExpectColumnValuesToBeNull",
                "unconvertible_currency",
                "row",
            ),
        ]
    elif source == "customers":
        rules = [
            present("customer_id"),
            Rule(
                "email_shape",
                "ExpectColumnValuesToMatchRegex",
                "email",
                "field",
                (("regex", EMAIL_PATTERN),),
            ),
            Rule(
                "phone_valid",
                "ExpectColumnValuesToNotBeNull",
                "phone",
                "field",
                only_if_present="phone_text",
            ),
            Rule(
                "birth_date_parseable",
                "ExpectColumnValuesToNotBeNull",
                "birth_date",
                "field",
                only_if_present="birth_date_text",
            ),
            Rule(
                "birth_date_plausible",
                "ExpectColumnValuesToBeBetween",
                "birth_date",
                "field",
                (("min_value", datetime(1900, 1, 1)),),
            ),
            not_after_ingestion("birth_date", "birth_date"),
            Rule(
                "signup_ts_parseable",
                "ExpectColumnValuesToNotBeNull",
                "signup_at",
                "field",
                only_if_present="signup_text",
            ),
            Rule(
                "signup_ts_plausible",
                "ExpectColumnValuesToBeBetween",
                "signup_at",
                "field",
                (("min_value", earliest),),
            ),
            not_after_ingestion("signup_at", "signup_ts"),
            Rule(
                "updated_at_parseable",
                "ExpectColumnValuesToNotBeNull",
                "updated_at",
                "field",
                only_if_present="updated_text",
            ),
            Rule(
                "updated_at_plausible",
                "ExpectColumnValuesToBeBetween",
                "updated_at",
                "field",
                (("min_value", earliest),),
            ),
            not_after_ingestion("updated_at", "updated_at"),
            Rule(
                "full_name_printable",
                "ExpectColumnValuesToNotMatchRegex",
                "full_name",
                "field",
                (("regex", CONTROL_CHARACTERS),),
            ),
            Rule(
                "city_printable",
                "ExpectColumnValuesToNotMatchRegex",
                "city",
                "field",
                (("regex", CONTROL_CHARACTERS),),
            ),
            Rule(
                "marketing_consent_known",
                "ExpectColumnValuesToNotBeNull",
                "marketing_consent",
                "field",
                only_if_present="marketing_consent_text",
            ),
        ]
    elif source == "events":
        rules = [
            present("customer_id"),
            *ts_rules("event_at", "event_ts"),
            present("event_type"),
            numeric("value"),
            Rule(
                "nps_score_in_range",
                "ExpectColumnValuesToBeBetween",
                "value",
                "row",
                (("min_value", 0), ("max_value", 10)),
                only_if_present="is_nps",
            ),
            Rule(
                "csat_score_in_range",
                "ExpectColumnValuesToBeBetween",
                "value",
                "row",
                (("min_value", 1), ("max_value", 5)),
                only_if_present="is_csat",
            ),
        ]
    else:
        raise ValueError(f"no suite for source {source!r}")
    return [
        *rules,
        Rule(CANARY_RULE, "ExpectTableRowCountToEqual", None, "canary", (("value", -1),)),
    ]
