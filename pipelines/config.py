"""Load and validate `crm.toml` into one immutable settings object.

Nothing reads configuration at import time: the CLI calls :func:`load_settings` once and
passes the result down. Every error names the offending key and what is allowed.

This module is the public face: every config name is imported from here. The section
classes live in pipelines/config_sections.py, their validators in
pipelines/config_checks.py and the JSON Schema generator in pipelines/config_schema.py;
``python -m pipelines.config`` checks a crm.toml or prints that schema (:func:`main`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pipelines.assets import asset_dir
from pipelines.config_checks import (
    _business_rules,
    _churn,
    _currency,
    _erasure,
    _execution,
    _exports,
    _models,
    _permissions,
    _reject_unknown,
    _report,
    _schedule,
    _source,
    _table,
    _validation,
    _warehouse,
)
from pipelines.config_schema import SCHEMA_PATH, config_schema, schema_text
from pipelines.config_sections import (
    CANONICAL_FIELDS,
    ENCODINGS,
    FORMATS,
    RFM_KEYS,
    SECTIONS,
    SUMMARY_RESOLUTIONS,
    TIME_UNITS,
    BusinessRules,
    ChurnConfig,
    CurrencyConfig,
    ErasureConfig,
    ExecutionConfig,
    ExportSettings,
    ModelConfig,
    PermissionsConfig,
    ReportConfig,
    ScheduleConfig,
    SourceConfig,
    ValidationConfig,
    WarehouseConfig,
    _keys,
)
from pipelines.errors import ConfigError

# Re-exported: the names other modules and the tests import from pipelines.config.
__all__ = [
    "CANONICAL_FIELDS",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "LOCAL_CONFIG",
    "SAMPLE_OUTPUTS",
    "describe_config",
    "find_config",
    "ENCODINGS",
    "FORMATS",
    "RFM_KEYS",
    "SAMPLE_DIR",
    "SCHEMA_PATH",
    "SECTIONS",
    "SUMMARY_RESOLUTIONS",
    "TIME_UNITS",
    "BusinessRules",
    "ChurnConfig",
    "ConfigError",
    "CurrencyConfig",
    "ExecutionConfig",
    "ExportSettings",
    "ModelConfig",
    "PermissionsConfig",
    "ErasureConfig",
    "ReportConfig",
    "ScheduleConfig",
    "Settings",
    "SourceConfig",
    "ValidationConfig",
    "WarehouseConfig",
    "_keys",
    "config_schema",
    "load_settings",
    "main",
    "schema_text",
    "settings_from_dict",
]

SAMPLE_DIR = asset_dir("sample")
DEFAULT_CONFIG = SAMPLE_DIR / "crm.toml"


@dataclass(frozen=True)
class Settings:
    """Validated, immutable settings for one pipeline run. Paths are absolute."""

    config_path: Path | None
    base_dir: Path
    warehouse: WarehouseConfig
    sources: Mapping[str, SourceConfig]
    exports: ExportSettings
    report: ReportConfig
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    currency: CurrencyConfig = field(default_factory=CurrencyConfig)
    rules: BusinessRules = field(default_factory=BusinessRules)
    churn: ChurnConfig = field(default_factory=ChurnConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    permissions: PermissionsConfig = field(default_factory=PermissionsConfig)
    erasure: ErasureConfig = field(default_factory=ErasureConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    config_sha256: str = ""


CONFIG_ENV = "CRM_CONFIG"
LOCAL_CONFIG = "crm.toml"
# the bundled sample, run without a config of one's own, writes here under the current folder
SAMPLE_OUTPUTS = {
    ("warehouse", "path"): Path("data") / "warehouse" / "crm.duckdb",
    ("warehouse", "serving_path"): Path("data") / "serving" / "crm.duckdb",
    ("exports", "path"): Path("exports"),
    ("report", "path"): Path("reports"),
}


def find_config(path: str | Path | None = None) -> tuple[Path | None, str]:
    """Which config a command uses: ``path`` if given, else ``$CRM_CONFIG``, else
    ``./crm.toml``, else ``None`` (the bundled sample). Returns the path and how it was
    found, in words (for the line a command prints about it)."""
    if path is not None:
        return Path(path).resolve(), "--config"
    env = os.environ.get(CONFIG_ENV)
    if env:
        found = Path(env).expanduser().resolve()
        if not found.is_file():
            raise ConfigError(
                f"${CONFIG_ENV} is {env!r}, but {found} does not exist. Point it at a "
                f"crm.toml, unset it, or pass --config PATH."
            )
        return found, f"${CONFIG_ENV}"
    local = Path.cwd() / LOCAL_CONFIG
    if local.is_file():
        return local.resolve(), f"./{LOCAL_CONFIG}"
    return None, "the bundled sample"


def describe_config(path: str | Path | None = None) -> str:
    """One line saying which config ``path`` (or its absence) leads to, and why."""
    found, how = find_config(path)
    if found is None:
        return (
            f"Config: the bundled sample ({DEFAULT_CONFIG}); outputs go under {Path.cwd()}. "
            f"No --config, ${CONFIG_ENV} or ./{LOCAL_CONFIG} was found (crm init writes one)."
        )
    return f"Config: {found} (from {how})."


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a `crm.toml`. ``None`` means: ``$CRM_CONFIG``, else
    ``./crm.toml``, else the bundled sample, whose outputs (warehouse, serving database,
    exports, report) then go under the current folder (:data:`SAMPLE_OUTPUTS`).

    Raises :class:`ConfigError` naming the key, the value and the allowed values.
    """
    found, _ = find_config(path)
    config_path = found if found is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        raise ConfigError(
            f"Config file {config_path} does not exist. Pass --config PATH "
            "to a crm.toml (see README.md, 'Configure')."
        )
    raw_bytes = config_path.read_bytes()
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path} is not valid TOML: {exc}.") from exc
    if found is None:
        # the sample's own relative paths would write into the installed package
        for (table, key), relative in SAMPLE_OUTPUTS.items():
            data.setdefault(table, {})[key] = str(Path.cwd() / relative)
    settings = settings_from_dict(data, base_dir=config_path.parent, config_path=config_path)
    return _replace(settings, config_sha256=hashlib.sha256(raw_bytes).hexdigest())


def settings_from_dict(
    data: Mapping[str, Any], base_dir: Path, config_path: Path | None = None
) -> Settings:
    """Validate a parsed TOML mapping; relative paths resolve against ``base_dir``."""
    _reject_unknown(data, set(SECTIONS), "")
    base_dir = Path(base_dir).resolve()
    warehouse = _warehouse(_table(data, "warehouse"), base_dir)
    sources_raw = _table(data, "sources")
    if "transactions" not in sources_raw:
        raise ConfigError(
            "[sources.transactions] is missing: a transactions source is "
            "required (see README.md, 'Add a source')."
        )
    sources = {
        name: _source(name, _table(sources_raw, name, f"sources.{name}"), base_dir)
        for name in sources_raw
    }
    validation = _validation(_table(data, "validation"))
    models = _models(_table(data, "models"))
    return Settings(
        config_path=config_path,
        base_dir=base_dir,
        warehouse=warehouse,
        sources=MappingProxyType(sources),
        exports=_exports(_table(data, "exports"), base_dir),
        report=_report(_table(data, "report"), base_dir),
        validation=validation,
        models=models,
        currency=_currency(_table(data, "currency")),
        rules=_business_rules(data),
        churn=_churn(_table(data, "churn")),
        schedule=_schedule(_table(data, "schedule")),
        permissions=_permissions(_table(data, "permissions")),
        erasure=_erasure(_table(data, "erasure")),
        execution=_execution(_table(data, "execution"), base_dir),
    )


def _replace(settings: Settings, **changes: Any) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.config", description="Check a crm.toml, or print its JSON Schema."
    )
    parser.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON Schema of crm.toml (docs/crm.schema.json)",
    )
    parser.add_argument("--config", type=Path, default=None, help="crm.toml to check")
    args = parser.parse_args(argv)
    if args.schema:
        sys.stdout.write(schema_text())
        return 0
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(f"{settings.config_path}: valid.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
