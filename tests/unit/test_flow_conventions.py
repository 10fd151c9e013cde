"""The Prefect conventions of flows.py that need no server: run names that say the as-of
date, the failure notification text, the project's loggers handed to Prefect."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import flows


def test_a_run_name_says_the_requested_as_of_date():
    assert flows.run_name({"as_of": "2025-03-31"}) == "crm as of 2025-03-31"
    assert flows.run_name({"as_of": None}) == "crm as of the latest order"


def test_a_scheduled_run_with_a_broken_config_still_gets_a_name(tmp_path):
    missing = str(tmp_path / "missing.toml")
    name = flows.run_name({"as_of_from_schedule": True, "config_path": missing})
    assert name == "crm as of the scheduled date"


def test_the_failure_notification_names_the_run_and_its_message():
    state = SimpleNamespace(message="File tx1.csv: 2 of 2 rows failed validation")
    text = flows.failure_message(SimpleNamespace(name="crm as of 2025-03-31"), state)
    assert text == (
        "CRM flow run 'crm as of 2025-03-31' failed: File tx1.csv: 2 of 2 rows failed validation"
    )


def test_the_project_loggers_go_to_prefect_at_info_level():
    assert set(os.environ["PREFECT_LOGGING_EXTRA_LOGGERS"].split(",")) >= {"pipelines", "models"}
    assert logging.getLogger("pipelines").getEffectiveLevel() <= logging.INFO
    # Prefect gave them its run-log handler, which sends records to the flow run's logs
    from prefect.logging.handlers import APILogHandler

    for name in ("pipelines", "models"):
        assert any(isinstance(h, APILogHandler) for h in logging.getLogger(name).handlers)


def test_the_progress_bar_is_silent_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", open(os.devnull, "w"))  # noqa: SIM115
    with flows._progress_bar() as bar:
        assert bar is None
