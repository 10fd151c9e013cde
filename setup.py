"""Packaging beyond pyproject.toml: the SQL, the report templates and the bundled sample
are kept at the repository's top level and shipped as package data under
pipelines/_assets/ (read through pipelines/assets.py), so a non-editable install works
outside the repository."""

from setuptools import find_packages, setup

ASSETS = {
    "pipelines._assets.sql": "sql",
    "pipelines._assets.templates": "reports/templates",
    "pipelines._assets.sample": "data/sample",
}

setup(
    # every subpackage (models.clv, pipelines.sample, ...) without listing each
    packages=find_packages(include=["pipelines*", "models*"]) + list(ASSETS),
    package_dir=ASSETS,
    package_data={
        "pipelines._assets.sql": ["**/*.sql", "**/*.toml"],
        "pipelines._assets.templates": ["*.j2"],
        # the exports and their config; the generator's truth files stay in the repository
        "pipelines._assets.sample": ["crm.toml", "*.csv", "*.jsonl"],
    },
)
