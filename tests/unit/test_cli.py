"""The ``crm`` command's exit codes and its one-paragraph messages: 0 success, 2 config
error, 3 input data, 4 failed step (1 for anything else). No test here starts a Prefect
flow run: every command, ``crm run`` included, loads the config before anything else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import cli, runlog
from pipelines.errors import ConfigError, CrmError, InputError, StepError
from tests.helpers import TX_COLUMNS, write_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, extra: str = "") -> Path:
    return write_config(
        tmp_path, f'[sources.transactions]\npath = "tx*.csv"\n{TX_COLUMNS}\n' + extra
    )


def _one_paragraph(text: str) -> str:
    assert text.endswith("\n") and "\n" not in text.rstrip("\n"), text
    assert "Traceback" not in text
    return text


def test_status_without_a_warehouse_says_so_and_succeeds(tmp_path, capsys):
    assert cli.main(["status", "--config", str(_config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("No run yet: ") and str(tmp_path / "wh" / "crm.duckdb") in out


@pytest.mark.parametrize("command", [["status"], ["forget", "C001"]])
def test_a_config_error_exits_2_naming_the_key(tmp_path, capsys, command):
    bad = _config(tmp_path, "[exports]\nreorder_within_days = -1\n")
    assert cli.main([*command, "--config", str(bad)]) == 2
    captured = capsys.readouterr()
    err = _one_paragraph(captured.err)
    assert err.startswith(
        f"crm {command[0]} failed: exports.reorder_within_days must be a "
        "whole number of days from 0 to 3660, got -1."
    )
    assert captured.out == ""
    assert not (tmp_path / "wh").exists()  # nothing was created


def test_run_with_a_bad_config_exits_2_before_prefect_starts(tmp_path, capsys, monkeypatch):
    # importing the flow (and so Prefect) would fail: the config must be refused first
    monkeypatch.setitem(sys.modules, "flows", None)
    bad = _config(tmp_path, "[exports]\nreorder_within_days = -1\n")
    assert cli.main(["run", "--config", str(bad)]) == 2
    assert "exports.reorder_within_days" in _one_paragraph(capsys.readouterr().err)


def test_an_unknown_key_exits_2(tmp_path, capsys):
    bad = _config(tmp_path, "[report]\nfolder = 'out'\n")
    assert cli.main(["status", "--config", str(bad)]) == 2
    assert "Unknown key report.folder in [report]; allowed: path." in capsys.readouterr().err


def test_a_missing_config_file_exits_2(tmp_path, capsys):
    assert cli.main(["forget", "C001", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in _one_paragraph(capsys.readouterr().err)


@pytest.mark.parametrize(
    "error, code", [(ConfigError, 2), (InputError, 3), (StepError, 4), (CrmError, 1)]
)
def test_each_error_class_has_its_exit_code(monkeypatch, capsys, error, code):
    def fail(config_path):
        raise error("what went wrong, where, and how to fix it.\nsecond line")

    monkeypatch.setattr(runlog, "format_latest_run", fail)
    assert cli.main(["status"]) == code
    assert capsys.readouterr().err.startswith("crm status failed: what went wrong")


def test_an_unexpected_error_is_one_paragraph_with_exit_1(monkeypatch, capsys):
    monkeypatch.delenv("CRM_DEBUG", raising=False)

    def crash(config_path):
        raise RuntimeError("disk on fire\nmore detail")

    monkeypatch.setattr(runlog, "format_latest_run", crash)
    assert cli.main(["status"]) == 1
    err = _one_paragraph(capsys.readouterr().err)
    assert "failed unexpectedly (RuntimeError: disk on fire)" in err and "CRM_DEBUG=1" in err


def test_generate_sample_rejects_bad_arguments(tmp_path, capsys):
    # A value the command checks itself is a CrmError (exit 1); what the parser rejects
    # (a missing or non-numeric option) is a usage error: exit 64 with the usage message.
    assert cli.main(["generate-sample", "--customers", "0", "--out", str(tmp_path)]) == 1
    assert "--customers must be at least 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    for argv in (
        ["generate-sample", "--out", str(tmp_path)],
        ["generate-sample", "--customers", "many", "--out", str(tmp_path)],
        ["run", "--as-of", "yesterday"],
    ):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == cli.USAGE_EXIT_CODE
        capsys.readouterr()


def test_the_installed_command_exits_2_on_a_config_error(tmp_path):
    bad = _config(tmp_path, "[schedule]\ncron = 'daily'\n")
    crm = Path(sys.executable).parent / "crm"
    argv = [str(crm)] if crm.exists() else [sys.executable, "-m", "pipelines.cli"]
    result = subprocess.run(
        [*argv, "status", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert _one_paragraph(result.stderr).startswith(
        "crm status failed: schedule.cron must be a 5-field cron expression"
    )


def test_backfill_refuses_a_reversed_range_and_a_bad_date_before_prefect_starts(tmp_path, capsys):
    config = _config(tmp_path)
    code = cli.main(
        ["backfill", "--from", "2025-01-05", "--to", "2025-01-01", "--config", str(config)]
    )
    assert code == 1
    err = _one_paragraph(capsys.readouterr().err)
    assert "--to 2025-01-01 is before --from 2025-01-05" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["backfill", "--from", "2025-13-01", "--to", "2025-12-01"])
    assert exit_info.value.code == cli.USAGE_EXIT_CODE
    assert "a date like 2025-12-31 is needed, got '2025-13-01'" in capsys.readouterr().err


def test_version_names_crm_and_its_libraries(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("crm ") and "duckdb " in out and "python " in out


def test_every_command_and_option_has_help(capsys):
    import typer

    group = typer.main.get_command(cli.app)
    names = set(group.commands)
    assert {"run", "backfill", "serve", "status", "forget", "generate-sample"} <= names
    for name, command in group.commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name} {param.name}"
        assert cli.main([name, "--help"]) == 0
        assert "Usage: crm " + name in capsys.readouterr().out


def test_a_usage_error_is_told_apart_from_a_config_error(tmp_path, capsys):
    # a usage error exits 64 with click's usage text, a config error 2 with one paragraph
    with pytest.raises(SystemExit) as info:
        cli.main(["status", "--no-such-option"])
    assert info.value.code == 64
    err = capsys.readouterr().err
    assert err.startswith("Usage: crm status") and "No such option: --no-such-option" in err
    bad = _config(tmp_path, "[exports]\nreorder_within_days = -1\n")
    assert cli.main(["status", "--config", str(bad)]) == 2
    assert "Usage:" not in capsys.readouterr().err


def test_status_json_is_null_without_a_run_and_the_run_log_after_one(tmp_path, capsys):
    import json

    import duckdb

    config = _config(tmp_path)
    assert cli.main(["status", "--json", "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out) is None
    (tmp_path / "wh").mkdir()
    con = duckdb.connect(str(tmp_path / "wh" / "crm.duckdb"))
    try:
        from pipelines.sqlrun import ensure_bookkeeping_tables

        ensure_bookkeeping_tables(con)
        con.execute(
            "insert into audit.runs (run_id, started_at, ended_at, status, as_of, "
            "config_sha256, package_versions, rows_per_step, message, step_seconds) values "
            "('r1', '2025-01-02 06:00:00', '2025-01-02 06:01:00', 'succeeded', '2025-01-01', "
            "'abc', '{\"duckdb\": \"2.0\"}', '{\"ingest\": 5}', null, '{\"ingest\": 1.5}')"
        )
    finally:
        con.close()
    assert cli.main(["status", "--json", "--config", str(config)]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["run_id"] == "r1" and run["status"] == "succeeded"
    assert run["as_of"] == "2025-01-01" and run["rows_per_step"] == {"ingest": 5}
    assert run["step_seconds"] == {"ingest": 1.5} and run["started_at"] == "2025-01-02T06:00:00"
