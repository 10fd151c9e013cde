"""Where the files the code reads at run time live: the SQL (``sql/``), the report
templates (``reports/templates/``) and the bundled sample (``data/sample/``).

In a checkout (and an editable install) they are read where they are kept in the
repository. A wheel (``pip install .``, pipx) ships them as package data under
``pipelines/_assets/`` (setup.py maps the repository folders there), so ``crm`` works
outside the repository.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_REPOSITORY = _PACKAGE.parent
# asset name -> its folder in the repository
REPOSITORY_DIRS = {
    "sql": Path("sql"),
    "templates": Path("reports") / "templates",
    "sample": Path("data") / "sample",
}


def asset_dir(name: str) -> Path:
    """The folder of asset ``name`` ("sql", "templates" or "sample"): the installed package
    data if there is any, else the repository's folder."""
    installed = _PACKAGE / "_assets" / name
    if installed.is_dir():
        return installed
    return _REPOSITORY / REPOSITORY_DIRS[name]
