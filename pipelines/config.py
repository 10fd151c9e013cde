"""Load and validate `crm.toml` into one immutable settings object.

Nothing reads configuration at import time: the CLI calls :func:`load_settings` once and
passes the result down. Every error names the offending key and what is allowed.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import hashlib
import json
import sys
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.rfm import DEFAULT_RFM_GRID, RfmGrid, SegmentRule
from models.segments import (
    DEFAULT_PLAYBOOK,
    LIFECYCLE_STAGES,
    VALUE_TIERS,
    LifecycleRules,
    Playbook,
    TierRules,
)
from pipelines.errors import ConfigError

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
DEFAULT_CONFIG = SAMPLE_DIR / "crm.toml"

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "crm.schema.json"

FORMATS = ("csv", "parquet", "jsonl", "text")
ENCODINGS = ("utf-8", "latin-1", "cp1252", "utf-16")
TIME_UNITS = {"D": 1, "W": 7}
SUMMARY_RESOLUTIONS = ("auto", "periods", "exact")
RFM_KEYS = ("segments",)

# Canonical fields per understood source: (required, optional). DESIGN.md is the contract.
CANONICAL_FIELDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "transactions": (
            ("customer_id", "order_ts", "amount"),
            (
                "order_id",
                "quantity",
                "unit_price",
                "currency",
                "product_id",
                "channel",
                "payment_method",
                "status",
            ),
        ),
        "customers": (
            ("customer_id",),
            (
                "email",
                "phone",
                "full_name",
                "birth_date",
                "gender",
                "city",
                "country",
                "signup_ts",
                "marketing_consent",
                "updated_at",
            ),
        ),
        "events": (
            ("customer_id", "event_ts", "event_type"),
            ("event_id", "channel", "value", "properties"),
        ),
    }
)


@dataclass(frozen=True)
class SourceConfig:
    """One export source: a glob of files with the same layout, mapped to canonical fields.

    ``columns`` maps canonical field -> source column name. ``amount`` may be left out of
    the mapping for transactions when ``quantity`` and ``unit_price`` are mapped: the
    pipeline derives amount = quantity x unit_price.
    """

    name: str = field(metadata={"toml": False})  # the table's name, sources.<name>
    path: str  # absolute glob
    format: str = field(metadata={"enum": FORMATS})
    columns: Mapping[str, str]
    timestamp_format: str | None = None
    date_format: str | None = None
    timezone: str = "UTC"
    delimiter: str | None = None
    encoding: str = field(
        default="utf-8",
        metadata={
            "description": "one of "
            + ", ".join(ENCODINGS)
            + " (utf8, latin1 and iso-8859-1 are read as their aliases)"
        },
    )
    quote: str | None = None
    header: bool = True
    names: tuple[str, ...] | None = None  # column names for header-less files
    decimal_comma: bool = False
    # Values that mean "missing" in id fields, compared case-insensitively: R writes NA,
    # databases NULL, pandas NaN, Excel #N/A. Such an id is no customer.
    missing_values: tuple[str, ...] = ("NA", "N/A", "#N/A", "NULL", "None", "NaN", "nil")
    # An order line repeated exactly inside one file is a duplicated export line unless
    # this is set (for exports where two identical lines are two real purchases).
    keep_identical_lines: bool = False


@dataclass(frozen=True)
class WarehouseConfig:
    path: Path = field(metadata={"toml_default": "data/warehouse/crm.duckdb"})
    serving_path: Path = field(metadata={"toml_default": "data/serving/crm.duckdb"})
    memory_limit: str = "4GB"
    temp_directory: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class ValidationConfig:
    earliest_date: date = date(2000, 1, 1)
    max_failed_share: float = 0.10


@dataclass(frozen=True)
class ModelConfig:
    time_unit: str = field(default="D", metadata={"enum": tuple(TIME_UNITS)})
    clv_horizon_days: int = 365
    churn_horizon_days: int = 90
    annual_discount_rate: float = 0.10
    expected_purchase_horizons_days: tuple[int, ...] = (30, 90, 365)
    penalizer: float = 0.0
    summary_resolution: str = field(default="auto", metadata={"enum": SUMMARY_RESOLUTIONS})
    holdout_days: int = 90
    min_customers: int = 100
    min_repeat_buyers: int = 30
    min_history_days: int = 90

    @property
    def unit_days(self) -> int:
        return TIME_UNITS[self.time_unit]


@dataclass(frozen=True)
class ScheduleConfig:
    """When ``crm serve`` runs the flow: a cron expression in an IANA time zone."""

    cron: str | None = None
    timezone: str = "UTC"
    deployment_name: str = "crm-scheduled"


@dataclass(frozen=True)
class ChurnConfig:
    band_cutoffs: tuple[float, float] = (0.33, 0.66)
    min_labelled_customers: int = 200
    seed: int = 0


@dataclass(frozen=True)
class CurrencyConfig:
    """Amounts are reported in ``base``; ``rates`` gives units of each other currency per
    one unit of base (e.g. GBP = 0.85 when 1 EUR buys 0.85 GBP)."""

    base: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportSettings:
    """``[exports]``: where the marketing lists go and the numbers of two of them
    (see pipelines/publish/exports.py)."""

    path: Path = field(metadata={"toml_default": "exports"})
    reorder_within_days: int = field(default=14, metadata={"minimum": 0, "maximum": 3660})
    follow_up_after_days: int = field(default=90, metadata={"minimum": 0, "maximum": 3660})
    # Normalised like staging normalises event types (sql/staging/events.sql), sorted.
    contact_event_types: tuple[str, ...] = ("support_ticket", "survey_response", "call")


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: the HTML report goes to ``<path>/<as_of>/report.html``."""

    path: Path = field(metadata={"toml_default": "reports"})


@dataclass(frozen=True)
class BusinessRules:
    """Rules users tune, as data: the RFM grid (``[rfm]``), value tiers, lifecycle stages and
    the playbook of recommended actions (defaults documented in README.md). The classes
    live in models/, which validates their values."""

    rfm_grid: RfmGrid = DEFAULT_RFM_GRID
    tiers: TierRules = field(default_factory=TierRules)
    lifecycle: LifecycleRules = field(default_factory=LifecycleRules)
    playbook: Playbook = DEFAULT_PLAYBOOK


def _business_rules(data: Mapping[str, Any]) -> BusinessRules:
    try:
        rfm_table = _table(data, "rfm")
        _reject_unknown(rfm_table, set(RFM_KEYS), "rfm")
        grid = (
            RfmGrid.from_dict(rfm_table["segments"], "rfm.segments")
            if "segments" in rfm_table
            else DEFAULT_RFM_GRID
        )
        tiers = TierRules.from_dict(_table(data, "tiers"), "tiers")
        lifecycle = LifecycleRules.from_dict(_table(data, "lifecycle"), "lifecycle")
        playbook_table = _table(data, "playbook")
        playbook = (
            Playbook.from_dict(playbook_table, "playbook", segments=grid.segments)
            if playbook_table
            else DEFAULT_PLAYBOOK
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return BusinessRules(rfm_grid=grid, tiers=tiers, lifecycle=lifecycle, playbook=playbook)


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
    config_sha256: str = ""


# The tables of crm.toml and the class each is validated into: the one list of sections,
# used by the unknown-key check and by the JSON Schema (:func:`config_schema`).
SECTIONS: Mapping[str, type] = MappingProxyType(
    {
        "warehouse": WarehouseConfig,
        "sources": SourceConfig,
        "validation": ValidationConfig,
        "models": ModelConfig,
        "rfm": RfmGrid,
        "tiers": TierRules,
        "lifecycle": LifecycleRules,
        "playbook": Playbook,
        "churn": ChurnConfig,
        "exports": ExportSettings,
        "schedule": ScheduleConfig,
        "report": ReportConfig,
        "currency": CurrencyConfig,
    }
)


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a `crm.toml`; ``None`` means the bundled sample config.

    Raises :class:`ConfigError` naming the key, the value and the allowed values.
    """
    config_path = Path(path).resolve() if path is not None else DEFAULT_CONFIG
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
    )


def _exports(data: Mapping[str, Any], base_dir: Path) -> ExportSettings:
    _reject_unknown(data, _keys(ExportSettings), "exports")
    path = data.get("path", _toml_default(ExportSettings, "path"))
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"exports.path must be a directory path (text), got {path!r}.")
    days = {}
    for key in ("reorder_within_days", "follow_up_after_days"):
        value = data.get(key, _toml_default(ExportSettings, key))
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3660:
            raise ConfigError(
                f"exports.{key} must be a whole number of days from 0 to 3660, got {value!r}."
            )
        days[key] = value
    types_ = data.get(
        "contact_event_types", list(_toml_default(ExportSettings, "contact_event_types"))
    )
    if (
        not isinstance(types_, (list, tuple))
        or not types_
        or not all(isinstance(t, str) and t.strip() for t in types_)
    ):
        raise ConfigError(
            "exports.contact_event_types must be a non-empty list of event "
            f'types such as ["support_ticket", "call"], got {types_!r}.'
        )
    # Staging normalises event types the same way (sql/staging/events.sql).
    normalised = tuple(sorted({t.strip().lower().replace(" ", "_") for t in types_}))
    return ExportSettings(path=_path(path, base_dir), contact_event_types=normalised, **days)


def _report(data: Mapping[str, Any], base_dir: Path) -> ReportConfig:
    _reject_unknown(data, _keys(ReportConfig), "report")
    value = data.get("path", _toml_default(ReportConfig, "path"))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"report.path must be a directory path (text), got {value!r}.")
    return ReportConfig(path=_path(value, base_dir))


def _schedule(data: Mapping[str, Any]) -> ScheduleConfig:
    _reject_unknown(data, _keys(ScheduleConfig), "schedule")
    cron = _get(data, "cron", "schedule", str, None)
    if cron is not None and len(cron.split()) != 5:
        raise ConfigError(
            f"schedule.cron must be a 5-field cron expression like "
            f"'0 6 * * *' (06:00 daily), got {cron!r}."
        )
    timezone = _get(data, "timezone", "schedule", str, "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"schedule.timezone {timezone!r} is not an IANA time zone.") from exc
    name = _get(data, "deployment_name", "schedule", str, "crm-scheduled")
    return ScheduleConfig(cron=cron, timezone=timezone, deployment_name=name)


def _churn(data: Mapping[str, Any]) -> ChurnConfig:
    _reject_unknown(data, _keys(ChurnConfig), "churn")
    cutoffs = _get(data, "band_cutoffs", "churn", list, [0.33, 0.66])
    if (
        len(cutoffs) != 2
        or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cutoffs)
        or not 0 < cutoffs[0] < cutoffs[1] < 1
    ):
        raise ConfigError(
            "churn.band_cutoffs must be two increasing probabilities between 0 "
            f"and 1 (low/medium and medium/high), got {cutoffs!r}."
        )
    minimum = _get(data, "min_labelled_customers", "churn", int, 200)
    if minimum < 10:
        raise ConfigError(f"churn.min_labelled_customers must be at least 10, got {minimum}.")
    seed = _get(data, "seed", "churn", int, 0)
    return ChurnConfig(
        band_cutoffs=(float(cutoffs[0]), float(cutoffs[1])),
        min_labelled_customers=minimum,
        seed=seed,
    )


def _currency(data: Mapping[str, Any]) -> CurrencyConfig:
    _reject_unknown(data, _keys(CurrencyConfig), "currency")
    base = _get(data, "base", "currency", str, None)
    if base is not None and not (len(base) == 3 and base.isalpha()):
        raise ConfigError(f"currency.base must be an ISO 4217 code like EUR, got {base!r}.")
    rates = _table(data, "rates", "currency.rates")
    if rates and base is None:
        raise ConfigError("currency.base is missing: [currency.rates] are per unit of base.")
    clean = {}
    for code, rate in rates.items():
        if not (len(code) == 3 and code.isalpha()):
            raise ConfigError(f"currency.rates.{code} is not an ISO 4217 code like GBP.")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ConfigError(
                f"currency.rates.{code} must be a positive number (units of "
                f"{code} per 1 {base}), got {rate!r}."
            )
        clean[code.upper()] = float(rate)
    return CurrencyConfig(base=base.upper() if base else None, rates=MappingProxyType(clean))


def _replace(settings: Settings, **changes: Any) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)


def _table(data: Mapping[str, Any], key: str, label: str | None = None) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{label or key}] must be a table, got {value!r}.")
    return value


def _keys(cls: type) -> set[str]:
    """The TOML keys of a section: the fields of its class (not those marked toml=False)."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("toml", True)}


def _toml_default(cls: type, name: str) -> Any:
    """The value a missing key means: ``toml_default`` for paths (resolved later against
    the config's directory), else the field's default."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if "toml_default" in f.metadata:
        return f.metadata["toml_default"]
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"[{prefix}]" if prefix else "the top level"
        raise ConfigError(
            f"Unknown key {prefix + '.' if prefix else ''}{unknown[0]} in "
            f"{where}; allowed: {', '.join(sorted(allowed))}."
        )


def _get(
    data: Mapping[str, Any], key: str, prefix: str, kind: type | tuple[type, ...], default: Any
) -> Any:
    value = data.get(key, default)
    if value is default:
        return value
    # bool is an int in Python; a boolean where a number is expected is a typo.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{prefix}.{key} must be {_kind_name(kind)}, got {value!r}.")
    if not isinstance(value, kind):
        raise ConfigError(f"{prefix}.{key} must be {_kind_name(kind)}, got {value!r}.")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _path(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()


def _warehouse(data: Mapping[str, Any], base_dir: Path) -> WarehouseConfig:
    _reject_unknown(data, _keys(WarehouseConfig), "warehouse")
    path = _get(data, "path", "warehouse", str, _toml_default(WarehouseConfig, "path"))
    serving = _get(
        data, "serving_path", "warehouse", str, _toml_default(WarehouseConfig, "serving_path")
    )
    memory_limit = _get(data, "memory_limit", "warehouse", str, "4GB")
    temp_dir = _get(data, "temp_directory", "warehouse", str, None)
    threads = _get(data, "threads", "warehouse", int, None)
    if threads is not None and threads < 1:
        raise ConfigError(f"warehouse.threads must be at least 1, got {threads}.")
    if _path(path, base_dir) == _path(serving, base_dir):
        raise ConfigError(
            "warehouse.path and warehouse.serving_path must differ: BI tools "
            "read the serving copy while the pipeline writes its own."
        )
    return WarehouseConfig(
        path=_path(path, base_dir),
        serving_path=_path(serving, base_dir),
        memory_limit=memory_limit,
        temp_directory=_path(temp_dir, base_dir) if temp_dir else None,
        threads=threads,
    )


def _source(name: str, data: Mapping[str, Any], base_dir: Path) -> SourceConfig:
    prefix = f"sources.{name}"
    if name not in CANONICAL_FIELDS:
        raise ConfigError(
            f"[{prefix}] is not a known source; allowed: {', '.join(CANONICAL_FIELDS)}."
        )
    _reject_unknown(data, _keys(SourceConfig), prefix)
    path = _get(data, "path", prefix, str, None)
    if not path:
        raise ConfigError(f"{prefix}.path is missing: a file or glob, relative to the config file.")
    fmt = _get(data, "format", prefix, str, _guess_format(path))
    if fmt not in FORMATS:
        raise ConfigError(f"{prefix}.format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    columns = _table(data, "columns", f"{prefix}.columns")
    required, optional = CANONICAL_FIELDS[name]
    for canonical, column in columns.items():
        if canonical not in required + optional:
            raise ConfigError(
                f"{prefix}.columns.{canonical} is not a canonical field of "
                f"{name}; allowed: {', '.join(required + optional)}."
            )
        if not isinstance(column, str) or not column:
            raise ConfigError(
                f"{prefix}.columns.{canonical} must be a source column name, got {column!r}."
            )
    derivable = {"amount"} if {"quantity", "unit_price"} <= set(columns) else set()
    for canonical in required:
        if canonical not in columns and canonical not in derivable:
            raise ConfigError(
                f"{prefix}.columns.{canonical} is missing: it is a required "
                f"field of {name}. Map it to the export's column name."
            )
    timezone = _get(data, "timezone", prefix, str, "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{prefix}.timezone {timezone!r} is not an IANA time zone "
            "(e.g. 'UTC', 'Europe/Berlin')."
        ) from exc
    encoding = _get(data, "encoding", prefix, str, "utf-8").lower().replace("_", "-")
    if encoding in ("utf8", "utf-8-sig"):
        encoding = "utf-8"
    if encoding in ("latin1", "iso-8859-1", "iso8859-1"):
        encoding = "latin-1"
    if encoding not in ENCODINGS:
        raise ConfigError(
            f"{prefix}.encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}."
        )
    delimiter = _get(data, "delimiter", prefix, str, None)
    if delimiter is not None and len(delimiter) != 1:
        raise ConfigError(f"{prefix}.delimiter must be one character, got {delimiter!r}.")
    quote = _get(data, "quote", prefix, str, None)
    if quote is not None and len(quote) > 1:
        raise ConfigError(f"{prefix}.quote must be one character or empty, got {quote!r}.")
    header = _get(data, "header", prefix, bool, True)
    names = _get(data, "names", prefix, list, None)
    if names is not None and not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{prefix}.names must be a list of column names.")
    if not header and names is None and fmt in ("csv", "text"):
        raise ConfigError(
            f"{prefix}.names is missing: a file without a header row "
            "(header = false) needs its column names listed."
        )
    missing_values = _get(data, "missing_values", prefix, list, None)
    if missing_values is not None and not all(isinstance(v, str) for v in missing_values):
        raise ConfigError(
            f"{prefix}.missing_values must be a list of strings such as "
            f'["NA", "NULL"], got {missing_values!r}.'
        )
    return SourceConfig(
        name=name,
        path=str(_path(path, base_dir)),
        format=fmt,
        columns=MappingProxyType(dict(columns)),
        timestamp_format=_get(data, "timestamp_format", prefix, str, None),
        date_format=_get(data, "date_format", prefix, str, None),
        timezone=timezone,
        delimiter=delimiter,
        encoding=encoding,
        quote=quote,
        header=header,
        names=tuple(names) if names else None,
        decimal_comma=_get(data, "decimal_comma", prefix, bool, False),
        missing_values=(
            tuple(missing_values) if missing_values is not None else SourceConfig.missing_values
        ),
        keep_identical_lines=_get(data, "keep_identical_lines", prefix, bool, False),
    )


def _guess_format(path: str) -> str:
    lower = path.lower()
    for suffix, fmt in (
        (".parquet", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".txt", "text"),
    ):
        if lower.endswith(suffix):
            return fmt
    return "csv"


def _validation(data: Mapping[str, Any]) -> ValidationConfig:
    _reject_unknown(data, _keys(ValidationConfig), "validation")
    earliest = data.get("earliest_date", ValidationConfig.earliest_date)
    if isinstance(earliest, str):
        try:
            earliest = date.fromisoformat(earliest)
        except ValueError as exc:
            raise ConfigError(
                f"validation.earliest_date must be a date like 2000-01-01, got {earliest!r}."
            ) from exc
    if not isinstance(earliest, date):
        raise ConfigError(f"validation.earliest_date must be a date, got {earliest!r}.")
    share = _get(data, "max_failed_share", "validation", (int, float), 0.10)
    if not 0 <= share <= 1:
        raise ConfigError(f"validation.max_failed_share must be between 0 and 1, got {share}.")
    return ValidationConfig(earliest_date=earliest, max_failed_share=float(share))


def _models(data: Mapping[str, Any]) -> ModelConfig:
    d = ModelConfig()
    _reject_unknown(data, _keys(ModelConfig), "models")
    unit = _get(data, "time_unit", "models", str, d.time_unit)
    if unit not in TIME_UNITS:
        raise ConfigError(f"models.time_unit must be one of D, W, got {unit!r}.")
    resolution = _get(data, "summary_resolution", "models", str, d.summary_resolution)
    if resolution not in SUMMARY_RESOLUTIONS:
        raise ConfigError(
            "models.summary_resolution must be one of "
            f"{', '.join(SUMMARY_RESOLUTIONS)}, got {resolution!r}."
        )
    values: dict[str, Any] = {"time_unit": unit, "summary_resolution": resolution}
    for key in (
        "clv_horizon_days",
        "churn_horizon_days",
        "holdout_days",
        "min_customers",
        "min_repeat_buyers",
        "min_history_days",
    ):
        v = _get(data, key, "models", int, getattr(d, key))
        if v < 1:
            raise ConfigError(f"models.{key} must be a positive whole number, got {v}.")
        values[key] = v
    rate = _get(data, "annual_discount_rate", "models", (int, float), d.annual_discount_rate)
    if not 0 <= rate < 1:
        raise ConfigError(f"models.annual_discount_rate must be in [0, 1), got {rate}.")
    penalizer = _get(data, "penalizer", "models", (int, float), d.penalizer)
    if penalizer < 0:
        raise ConfigError(f"models.penalizer must be >= 0, got {penalizer}.")
    horizons = _get(
        data,
        "expected_purchase_horizons_days",
        "models",
        list,
        list(d.expected_purchase_horizons_days),
    )
    if not horizons or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in horizons
    ):
        raise ConfigError(
            "models.expected_purchase_horizons_days must be a list of positive "
            f"whole numbers of days, got {horizons!r}."
        )
    values.update(
        annual_discount_rate=float(rate),
        penalizer=float(penalizer),
        expected_purchase_horizons_days=tuple(sorted(set(horizons))),
    )
    return ModelConfig(**values)


# --- JSON Schema for editors ---------------------------------------------------------------
# Generated from the section classes above (their fields are the keys, their types and
# defaults the schema's), so the schema cannot list a key the loader rejects or miss one it
# takes. It helps editors complete and check crm.toml; load_settings stays the authority
# (cross-key rules such as "the last playbook rule has no conditions" are only checked there).


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of crm.toml, as written to docs/crm.schema.json."""
    properties = {name: _section_schema(name, cls) for name, cls in SECTIONS.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "crm.toml",
        "description": "Config of the CRM batch pipeline (README.md, 'Configure'). "
        "Generated by `python -m pipelines.config --schema`; do not edit.",
        "type": "object",
        "properties": properties,
        "required": ["sources"],
        "additionalProperties": False,
    }


def _section_schema(name: str, cls: type) -> dict[str, Any]:
    if name == "sources":
        sources = {}
        for source, (required, optional) in CANONICAL_FIELDS.items():
            schema = _dataclass_schema(SourceConfig)
            schema["properties"]["columns"] = {
                "type": "object",
                "description": f"canonical field of {source} = the export's column name; "
                f"required: {', '.join(required)}",
                "properties": {f: {"type": "string", "minLength": 1} for f in required + optional},
                "additionalProperties": False,
            }
            schema["required"] = ["path", "columns"]
            sources[source] = schema
        return {
            "type": "object",
            "properties": sources,
            "required": ["transactions"],
            "additionalProperties": False,
        }
    if name == "rfm":
        score = {"type": "integer", "minimum": 1, "maximum": 5}
        score_range = {
            "oneOf": [score, {"type": "array", "items": score, "minItems": 2, "maxItems": 2}]
        }
        keys = [f.name for f in dataclasses.fields(SegmentRule) if f.name != "segment"]
        rectangle = {
            "type": "object",
            "properties": {k: score_range for k in keys},
            "required": keys,
            "additionalProperties": False,
        }
        segments = {
            "type": "object",
            "description": "segment name = { r = [low, high], "
            "f = [low, high] } or a list of them; "
            "replaces the default grid",
            "additionalProperties": {
                "oneOf": [rectangle, {"type": "array", "items": rectangle, "minItems": 1}]
            },
        }
        return {
            "type": "object",
            "properties": dict.fromkeys(RFM_KEYS, segments),
            "additionalProperties": False,
        }
    schema = _dataclass_schema(cls)
    if name == "playbook":
        rule = schema["properties"]["rules"]["items"]
        rule["required"] = ["action"]
        rule["properties"]["tiers"]["items"]["enum"] = list(VALUE_TIERS)
        rule["properties"]["stages"]["items"]["enum"] = list(LIFECYCLE_STAGES)
        schema["properties"]["rules"]["minItems"] = 1
    return schema


def _dataclass_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("toml", True):
            continue
        prop = _type_schema(hints[f.name])
        for key in ("enum", "minimum", "maximum", "description"):
            if key in f.metadata:
                prop[key] = list(f.metadata[key]) if key == "enum" else f.metadata[key]
        default = _toml_default(cls, f.name)
        if default is not None and default is not dataclasses.MISSING:
            prop["default"] = _json_value(default)
        properties[f.name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _type_schema(tp: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]  # TOML has no null: leave the key out
        return (
            _type_schema(rest[0]) if len(rest) == 1 else {"anyOf": [_type_schema(a) for a in rest]}
        )
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _type_schema(args[0])}
        return {
            "type": "array",
            "items": _type_schema(args[0]),
            "minItems": len(args),
            "maxItems": len(args),
        }
    if isinstance(origin, type) and issubclass(origin, collections.abc.Mapping):
        return {"type": "object", "additionalProperties": _type_schema(args[1])}
    if dataclasses.is_dataclass(tp):
        return _dataclass_schema(tp)
    simple = {
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        float: {"type": "number"},
        str: {"type": "string"},
        Path: {"type": "string"},
        date: {"type": "string", "format": "date"},
    }
    if tp in simple:
        return dict(simple[tp])
    raise TypeError(f"no JSON Schema for {tp!r}")


def _json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            f.name: _json_value(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


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
