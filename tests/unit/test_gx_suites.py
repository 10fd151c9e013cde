"""The Great Expectations suites: built with GX 1.x's current APIs (condition objects,
native severity), and checked in as JSON that equals what the rules build."""

from __future__ import annotations

import warnings

import pytest

from pipelines.config import load_settings
from pipelines.load import quality
from pipelines.load.clean import STAGING_ORDER
from pipelines.load.rules import suite_rules
from pipelines.load.suites import SUITE_DIR, suite_text


@pytest.mark.parametrize("source", STAGING_ORDER)
def test_the_checked_in_suite_equals_what_the_rules_build(source):
    path = SUITE_DIR / f"{source}_suite.json"
    assert path.read_text(encoding="utf-8") == suite_text(source), (
        f"{path} is out of date: run .venv/bin/python -m pipelines.load.suites"
    )


@pytest.mark.parametrize("source", STAGING_ORDER)
def test_suites_use_no_deprecated_gx_api(source):
    gx, _ = quality._gx()
    settings = load_settings(None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        suite = quality.build_suite(gx, source, settings)
    deprecated = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecated == []
    # every source has a rule that checks only rows where a text column is present
    assert any(e.row_condition is not None for e in suite.expectations)
    for expectation in suite.expectations:
        assert expectation.severity.value in ("critical", "warning", "info")
        assert "severity" not in (expectation.meta or {})


def test_rule_severities_map_to_gx_severities():
    gx, _ = quality._gx()
    rules = {r.name: r for r in suite_rules("customers", load_settings(None))}
    suite = {
        e.meta["rule"]: e
        for e in quality.build_suite(gx, "customers", load_settings(None)).expectations
    }
    assert suite["customer_id_present"].severity.value == "critical"  # row rule
    assert suite["email_shape"].severity.value == "warning"  # field rule
    assert suite["canary_must_fail"].severity.value == "info"
    # a rule that checks only rows where its text column is present carries a condition
    assert rules["phone_valid"].only_if_present == "phone_text"
    condition = suite["phone_valid"].row_condition
    assert condition.column.name == "phone_text" and condition.is_null is False
