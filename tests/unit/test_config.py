"""pipelines/config.py: every table of crm.toml is validated on load, errors name the key
and the allowed values, unknown keys are rejected everywhere, and the JSON Schema in
docs/crm.schema.json is what the code generates."""

from __future__ import annotations

import copy
import re
import tomllib
from datetime import date
from pathlib import Path

import pytest

from models.rfm import DEFAULT_RFM_GRID, RfmGrid
from models.segments import DEFAULT_PLAYBOOK, LifecycleRules, Playbook, TierRules
from pipelines import config
from pipelines.config import (
    DEFAULT_CONFIG,
    SCHEMA_PATH,
    SECTIONS,
    ConfigError,
    load_settings,
    settings_from_dict,
)
from tests.helpers import TX_COLUMNS, write_config

BASE = {
    "warehouse": {"path": "wh/crm.duckdb", "serving_path": "serving/crm.duckdb"},
    "sources": {
        "transactions": {
            "path": "tx*.csv",
            "columns": {"customer_id": "CustomerID", "order_ts": "InvoiceDate", "amount": "Amount"},
        }
    },
}


def _with(path: str, value) -> dict:
    """BASE with ``value`` set at the dotted ``path`` (tables created on the way)."""
    data = copy.deepcopy(BASE)
    *tables, key = path.split(".")
    node = data
    for table in tables:
        node = node.setdefault(table, {})
    node[key] = value
    return data


def _load(data: dict, tmp_path: Path):
    return settings_from_dict(data, base_dir=tmp_path)


def test_the_base_config_loads(tmp_path):
    settings = _load(BASE, tmp_path)
    assert settings.warehouse.path == tmp_path / "wh" / "crm.duckdb"
    assert settings.exports.path == tmp_path / "exports"
    assert settings.report.path == tmp_path / "reports"
    assert settings.rules.rfm_grid is DEFAULT_RFM_GRID
    assert settings.rules.playbook is DEFAULT_PLAYBOOK


# One bad value per section: the message names the key and says what is allowed.
@pytest.mark.parametrize(
    "path, value, message",
    [
        ("warehouse.threads", 0, "warehouse.threads must be at least 1"),
        ("warehouse.memory_limit", 4, "warehouse.memory_limit must be a string"),
        (
            "sources.transactions.format",
            "xlsx",
            "sources.transactions.format must be one of csv, parquet, jsonl, text, excel, got 'xlsx'",
        ),
        (
            "sources.transactions.encoding",
            "ebcdic",
            "sources.transactions.encoding must be one of utf-8, latin-1, cp1252, utf-16",
        ),
        (
            "sources.transactions.timezone",
            "Mars/Olympus",
            "sources.transactions.timezone 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "sources.customers",
            {"path": "c.csv", "columns": {"email": "Email"}},
            "sources.customers.columns.customer_id is missing",
        ),
        (
            "sources.orders",
            {"path": "o.csv"},
            r"[sources.orders] is not a known source; allowed: transactions, customers, events",
        ),
        (
            "sources.transactions.warn_after_days",
            -1,
            "sources.transactions.warn_after_days must be a whole number of days >= 0, got -1",
        ),
        (
            "sources.transactions.error_after_days",
            2.5,
            "sources.transactions.error_after_days must be an integer, got 2.5",
        ),
        (
            "sources.transactions.error_after_days",
            True,
            "sources.transactions.error_after_days must be an integer, got True",
        ),
        ("validation.max_failed_share", 2, "validation.max_failed_share must be between 0 and 1"),
        (
            "validation.earliest_date",
            "last year",
            "validation.earliest_date must be a date like 2000-01-01",
        ),
        ("models.time_unit", "M", "models.time_unit must be one of D, W, got 'M'"),
        (
            "models.summary_resolution",
            "fine",
            "models.summary_resolution must be one of auto, periods, exact",
        ),
        (
            "rfm.segments",
            {"champions": {"r": [5, 5]}},
            "rfm.segments.champions must have exactly the keys r and f",
        ),
        ("tiers.strategic_share", 1.5, "tiers.strategic_share must be between 0 and 1"),
        ("lifecycle.new_within_days", -1, "lifecycle.new_within_days must be between 0 and 36500"),
        (
            "playbook.rules",
            [{"action": "call", "tiers": ["vip"]}, {"action": "nothing"}],
            "playbook.rules[0].tiers: unknown value 'vip'; allowed: strategic, key, general, "
            "potential",
        ),
        (
            "churn.band_cutoffs",
            [0.7, 0.3],
            "churn.band_cutoffs must be two increasing probabilities between 0 and 1",
        ),
        ("churn.min_labelled_customers", 5, "churn.min_labelled_customers must be at least 10"),
        (
            "exports.reorder_within_days",
            "two weeks",
            "exports.reorder_within_days must be a whole number of days from 0 to 3660",
        ),
        (
            "exports.follow_up_after_days",
            True,
            "exports.follow_up_after_days must be a whole number of days from 0 to 3660",
        ),
        ("exports.contact_event_types", [], "exports.contact_event_types must be a non-empty list"),
        ("exports.path", 3, "exports.path must be a directory path (text), got 3"),
        ("schedule.cron", "daily", "schedule.cron must be a 5-field cron expression"),
        ("schedule.timezone", "Mars/Olympus", "schedule.timezone 'Mars/Olympus' is not an IANA"),
        ("report.path", 5, "report.path must be a directory path (text), got 5"),
        ("report.path", "  ", "report.path must be a directory path (text)"),
        ("currency.base", "EURO", "currency.base must be an ISO 4217 code like EUR"),
        ("currency.rates", {"GBP": -1}, "currency.rates.GBP must be a positive number"),
    ],
)
def test_a_bad_value_names_the_key(tmp_path, path, value, message):
    data = _with(path, value)
    if path.startswith("currency.rates"):
        data["currency"]["base"] = "EUR"
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(data, tmp_path)


# An unknown key in every table is rejected, naming it and what is allowed.
@pytest.mark.parametrize(
    "table, message",
    [
        (
            "",
            "Unknown key typo in the top level; allowed: churn, currency, erasure, execution, exports",
        ),
        ("warehouse", "Unknown key warehouse.typo in [warehouse]; allowed: memory_limit, path"),
        (
            "sources.transactions",
            "Unknown key sources.transactions.typo in "
            "[sources.transactions]; allowed: columns, date_format",
        ),
        (
            "sources.transactions.columns",
            "sources.transactions.columns.typo is not a canonical "
            "field of transactions; allowed: customer_id",
        ),
        (
            "validation",
            "Unknown key validation.typo in [validation]; allowed: earliest_date, max_failed_share",
        ),
        ("models", "Unknown key models.typo in [models]; allowed: annual_discount_rate"),
        ("rfm", "Unknown key rfm.typo in [rfm]; allowed: segments"),
        (
            "tiers",
            "tiers.typo is not a known setting; allowed: strategic_share, key_share, "
            "active_within_days",
        ),
        ("lifecycle", "lifecycle.typo is not a known setting; allowed: new_within_days"),
        ("playbook", "playbook.typo is not a known setting; allowed: rules"),
        (
            "churn",
            "Unknown key churn.typo in [churn]; allowed: band_cutoffs, "
            "min_labelled_customers, retrain_every_days, seed",
        ),
        (
            "exports",
            "Unknown key exports.typo in [exports]; allowed: contact_event_types, "
            "follow_up_after_days, path, reorder_within_days",
        ),
        (
            "schedule",
            "Unknown key schedule.typo in [schedule]; allowed: cron, deployment_name, timezone",
        ),
        ("report", "Unknown key report.typo in [report]; allowed: path"),
        ("currency", "Unknown key currency.typo in [currency]; allowed: base, rates"),
        (
            "erasure",
            "Unknown key erasure.typo in [erasure]; allowed: key_block, key_env, old_keys_env",
        ),
    ],
)
def test_an_unknown_key_is_rejected(tmp_path, table, message):
    data = _with(f"{table}.typo" if table else "typo", 1)
    with pytest.raises(ConfigError, match=re.escape(message)):
        _load(data, tmp_path)


def test_freshness_days_are_read_per_source_and_unset_by_default(tmp_path):
    data = _with("sources.transactions.warn_after_days", 2)
    data["sources"]["transactions"]["error_after_days"] = 7
    data["sources"]["events"] = {
        "path": "ev.jsonl",
        "columns": {"customer_id": "user", "event_ts": "ts", "event_type": "type"},
        "error_after_days": 0,
    }
    data["sources"]["customers"] = {"path": "c.csv", "columns": {"customer_id": "id"}}
    sources = _load(data, tmp_path).sources
    assert (sources["transactions"].warn_after_days, sources["transactions"].error_after_days) == (
        2,
        7,
    )
    assert (sources["events"].warn_after_days, sources["events"].error_after_days) == (None, 0)
    assert (sources["customers"].warn_after_days, sources["customers"].error_after_days) == (
        None,
        None,
    )


def test_warn_after_days_over_error_after_days_names_both_keys(tmp_path):
    data = _with("sources.transactions.warn_after_days", 8)
    data["sources"]["transactions"]["error_after_days"] = 7
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "sources.transactions.warn_after_days (8) must not be more than "
            "sources.transactions.error_after_days (7)"
        ),
    ):
        _load(data, tmp_path)
    data["sources"]["transactions"]["warn_after_days"] = 7  # equal is allowed
    assert _load(data, tmp_path).sources["transactions"].warn_after_days == 7


def test_customer_freshness_needs_a_timestamp_column_to_date_customers_by(tmp_path):
    data = copy.deepcopy(BASE)
    data["sources"]["customers"] = {
        "path": "c.csv",
        "columns": {"customer_id": "id"},
        "warn_after_days": 3,
    }
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "sources.customers.warn_after_days needs sources.customers.columns.updated_at or "
            "sources.customers.columns.signup_ts mapped"
        ),
    ):
        _load(data, tmp_path)
    data["sources"]["customers"]["columns"]["signup_ts"] = "SignupDate"
    assert _load(data, tmp_path).sources["customers"].warn_after_days == 3


def test_unknown_keys_inside_rules_are_rejected(tmp_path):
    rule = _with("playbook.rules", [{"action": "call", "when": "now"}, {"action": "none"}])
    with pytest.raises(
        ConfigError,
        match=re.escape("playbook.rules[0].when is not a known setting; allowed: action, tiers"),
    ):
        _load(rule, tmp_path)
    cell = _with("rfm.segments", {"champions": {"r": 5, "f": 5, "m": 5}})
    with pytest.raises(
        ConfigError,
        match=re.escape("rfm.segments.champions must have exactly the keys r and f, got r, f, m"),
    ):
        _load(cell, tmp_path)


@pytest.mark.parametrize("table", ["exports", "report", "schedule", "rfm", "currency"])
def test_a_section_that_is_not_a_table_is_rejected(tmp_path, table):
    with pytest.raises(ConfigError, match=re.escape(f"[{table}] must be a table")):
        _load(_with(table, 5), tmp_path)


def test_errors_are_config_errors_with_exit_code_2(tmp_path):
    path = tmp_path / "crm.toml"
    path.write_text("[exports]\nreorder_within_days = -3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    path.write_text("[exports\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path)


def test_the_bundled_sample_config_loads_to_its_values(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    sample = DEFAULT_CONFIG.parent
    assert settings.config_path == DEFAULT_CONFIG
    # found by no --config, $CRM_CONFIG or ./crm.toml: outputs under the current folder
    assert settings.warehouse.path == tmp_path / "data/warehouse/crm.duckdb"
    assert settings.warehouse.serving_path == tmp_path / "data/serving/crm.duckdb"
    assert settings.sources["transactions"].path == str(sample / "transactions*.csv")
    assert set(settings.sources) == {"transactions", "customers", "events"}
    assert settings.sources["events"].format == "jsonl"
    assert settings.currency.base == "EUR" and settings.currency.rates["GBP"] == 0.85
    assert settings.validation.earliest_date == date(2000, 1, 1)
    assert settings.exports.path == tmp_path / "exports"
    assert (settings.exports.reorder_within_days, settings.exports.follow_up_after_days) == (14, 90)
    assert settings.exports.contact_event_types == ("call", "support_ticket", "survey_response")
    assert settings.report.path == tmp_path / "reports"
    assert (settings.schedule.cron, settings.schedule.timezone) == ("0 6 * * *", "Europe/Berlin")
    assert settings.models.clv_horizon_days == 365
    assert settings.rules.tiers == TierRules() and settings.rules.lifecycle == LifecycleRules()
    assert len(settings.config_sha256) == 64


def test_settings_keep_typed_sections_only(tmp_path):
    settings = _load(BASE, tmp_path)
    assert not hasattr(settings, "sections") and not hasattr(settings, "section")
    assert isinstance(settings.rules.rfm_grid, RfmGrid)
    assert isinstance(settings.rules.playbook, Playbook)


def test_configured_rules_are_parsed(tmp_path):
    data = _with(
        "rfm.segments", {"best": {"r": [4, 5], "f": [1, 5]}, "rest": {"r": [1, 3], "f": [1, 5]}}
    )
    data["playbook"] = {"rules": [{"action": "thank", "segments": ["best"]}, {"action": "wait"}]}
    data["tiers"] = {"strategic_share": 0.1}
    rules = _load(data, tmp_path).rules
    assert rules.rfm_grid.segments == ("best", "rest")
    assert [r.action for r in rules.playbook.rules] == ["thank", "wait"]
    assert rules.tiers.strategic_share == 0.1


# --- the JSON Schema ----------------------------------------------------------------------


def test_the_committed_schema_is_what_the_code_generates():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == config.schema_text(), (
        "docs/crm.schema.json is stale: run .venv/bin/python -m pipelines.config --schema "
        "> docs/crm.schema.json"
    )


def test_the_schema_lists_exactly_the_keys_the_loader_accepts():
    schema = config.config_schema()
    assert set(schema["properties"]) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        if name not in ("sources", "rfm"):
            assert set(schema["properties"][name]["properties"]) == config._keys(cls), name
        assert schema["properties"][name]["additionalProperties"] is False, name
    source = schema["properties"]["sources"]["properties"]["transactions"]
    assert set(source["properties"]) == config._keys(config.SourceConfig)


def test_the_sample_config_satisfies_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    data = tomllib.loads(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    jsonschema.validate(data, config.config_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**data, "exports": {"reorder_days": 3}}, config.config_schema())


def test_the_module_prints_the_schema_and_checks_a_config(capsys, tmp_path):
    assert config.main(["--schema"]) == 0
    assert capsys.readouterr().out == config.schema_text()
    assert config.main([]) == 0
    bad = write_config(
        tmp_path,
        f"[sources.transactions]\npath = \"tx*.csv\"\n{TX_COLUMNS}\n[report]\nfolder = 'x'\n",
    )
    assert config.main(["--config", str(bad)]) == 2
    assert "report.folder" in capsys.readouterr().err


def test_without_config_crm_config_then_local_crm_toml_then_the_sample(tmp_path, monkeypatch):
    from pipelines.config import describe_config, find_config

    monkeypatch.delenv("CRM_CONFIG", raising=False)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    monkeypatch.chdir(here)
    assert find_config(None) == (None, "the bundled sample")
    assert "the bundled sample" in describe_config(None) and str(here) in describe_config(None)
    text = (
        '[warehouse]\npath = "wh/crm.duckdb"\nserving_path = "serving/crm.duckdb"\n'
        '[sources.transactions]\npath = "tx*.csv"\n[sources.transactions.columns]\n'
        'customer_id = "C"\norder_ts = "T"\namount = "A"\n'
    )
    (here / "crm.toml").write_text(text, encoding="utf-8")
    assert find_config(None) == (here / "crm.toml", "./crm.toml")
    assert load_settings(None).warehouse.path == here / "wh" / "crm.duckdb"
    (there / "mine.toml").write_text(text, encoding="utf-8")
    monkeypatch.setenv("CRM_CONFIG", str(there / "mine.toml"))
    assert find_config(None) == (there / "mine.toml", "$CRM_CONFIG")
    assert load_settings(None).warehouse.path == there / "wh" / "crm.duckdb"
    assert find_config(here / "crm.toml") == (here / "crm.toml", "--config")
    monkeypatch.setenv("CRM_CONFIG", str(there / "missing.toml"))
    with pytest.raises(ConfigError, match=r"\$CRM_CONFIG is .*missing.toml"):
        load_settings(None)


def test_timestamp_format_is_one_format_or_a_list_tried_in_order(tmp_path):
    from pipelines.load.clean import source_params

    def source(**extra):
        data = {**BASE, "sources": {"transactions": {**BASE["sources"]["transactions"], **extra}}}
        return _load(data, tmp_path).sources["transactions"]

    assert source_params(source())["timestamp_format"] == [""]
    assert source_params(source(timestamp_format="%d.%m.%Y"))["timestamp_format"] == ["%d.%m.%Y"]
    both = source(timestamp_format=["%d/%m/%Y %H:%M", "%Y-%m-%d"], date_format=["%d.%m.%Y"])
    assert both.timestamp_format == ("%d/%m/%Y %H:%M", "%Y-%m-%d")
    assert source_params(both)["date_format"] == ["%d.%m.%Y"]
    for bad in ([], [""], ["%Y", 3], ""):
        with pytest.raises(ConfigError, match="sources.transactions.timestamp_format"):
            source(timestamp_format=bad)
