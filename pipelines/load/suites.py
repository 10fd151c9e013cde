"""The Great Expectations suites as JSON files in the repository, for review and diffs.

The rules in ``pipelines/load/rules.py`` stay the source of truth (they depend on the
config, e.g. ``[validation] earliest_date``); ``gx/expectations/<source>_suite.json`` is
what they build for the bundled sample's config, in GX's own suite format. A test checks
that the files equal what the rules build, so the two cannot drift. Regenerate them after
changing a rule::

    .venv/bin/python -m pipelines.load.suites
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.config import load_settings
from pipelines.load.clean import STAGING_ORDER

SUITE_DIR = Path(__file__).resolve().parents[2] / "gx" / "expectations"


def suite_text(source: str, config_path: str | Path | None = None) -> str:
    """The JSON text of ``source``'s suite for the config at ``config_path`` (default: the
    bundled sample), with sorted keys and a final newline."""
    from pipelines.load.quality import suite_json

    suite = suite_json(source, load_settings(config_path))
    return json.dumps(suite, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"


def write_suites(directory: Path = SUITE_DIR) -> list[Path]:
    """Write every source's suite file into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in STAGING_ORDER:
        path = directory / f"{source}_suite.json"
        path.write_text(suite_text(source), encoding="utf-8")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_suites():
        print(written, file=sys.stdout)
