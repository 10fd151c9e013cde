"""Shared fixtures (plain helpers are in tests/helpers.py); the tiers by folder:
tests/unit (``make test-fast``) and tests/integration (marker ``integration``: whole runs,
the Prefect flow, kill, determinism and erasure end to end)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from tests.helpers import TX_COLUMNS, write_config  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (each costs 15 s): the flow
    tests and the Dask runner's tests (its bucket stages are Prefect flows) share it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def tx_config(tmp_path):
    """Factory: write transaction file(s) and a config mapping the generator's columns."""

    def make(
        files: dict[str, bytes],
        extra: str = "",
        pattern: str = "tx*",
        validation: str = "[validation]\nmax_failed_share = 1.0\n",
    ) -> Path:
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        body = f'[sources.transactions]\npath = "{pattern}"\nformat = "csv"\n{extra}\n{TX_COLUMNS}'
        return write_config(tmp_path, body, validation)

    return make
