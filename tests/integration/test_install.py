"""A plain, non-editable install works outside the repository: the SQL, the report
templates and the bundled sample are package data, and with no config `crm run` runs the
sample with its outputs under the current folder.

The new virtualenv gets the locked wheels from uv's cache (no download when `make setup`
ran on this machine), then the project built as a wheel from this checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _uv() -> str:
    uv = Path(sys.executable).parent / "uv"
    if uv.exists():
        return str(uv)
    found = shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (make setup installs it into .venv)")
    return found


@pytest.mark.timeout(900)
def test_a_non_editable_install_runs_crm_in_an_empty_folder(tmp_path):
    uv, venv = _uv(), tmp_path / "venv"
    # the build must not see this checkout's build/ leftovers: copy what git would commit
    source = tmp_path / "source"
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    for argv in (
        [uv, "venv", "-q", str(venv), "--python", sys.executable],
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
         "--require-hashes", "-r", str(ROOT / "requirements.lock")],
        [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-deps",
         str(source)],
    ):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True, timeout=600)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert not (site / "crm_pipeline.pth").exists() and not list(site.glob("__editable__*"))
    assert (site / "pipelines" / "_assets" / "sql" / "core" / "customer_map.sql").is_file()
    shutil.rmtree(source)  # nothing may be read from a checkout

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CRM_CONFIG", "PYTHONPATH")}
    crm = str(venv / "bin" / "crm")
    version = subprocess.run(
        [crm, "--version"], cwd=empty, env=env, capture_output=True, text=True, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("crm 0.1.0 (python ")
    run = subprocess.run(
        [crm, "run"], cwd=empty, env=env, capture_output=True, text=True, timeout=840
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("Config: the bundled sample (")
    assert str(site / "pipelines" / "_assets" / "sample" / "crm.toml") in run.stdout
    assert (empty / "data" / "warehouse" / "crm.duckdb").is_file()
    assert (empty / "data" / "serving" / "crm.duckdb").is_file()
    assert list((empty / "reports").glob("*/report.html"))
    assert list((empty / "exports").glob("*/manifest.json"))
    # the installed package data was only read
    assert not (site / "pipelines" / "_assets" / "warehouse").exists()
