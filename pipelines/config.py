"""Load and validate `crm.toml` into one immutable settings object.

Nothing reads configuration at import time: the CLI calls :func:`load_settings` once and
passes the result down. Every error names the offending key and what is allowed.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipelines.errors import ConfigError

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data" / "sample"
DEFAULT_CONFIG = SAMPLE_DIR / "crm.toml"

FORMATS = ("csv", "parquet", "jsonl", "text")
TIME_UNITS = {"D": 1, "W": 7}

# Canonical fields per understood source: (required, optional). DESIGN.md is the contract.
CANONICAL_FIELDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "transactions": (
            ("customer_id", "order_ts", "amount"),
            ("order_id", "quantity", "unit_price", "currency", "product_id", "channel",
             "payment_method", "status"),
        ),
        "customers": (
            ("customer_id",),
            ("email", "phone", "full_name", "birth_date", "gender", "city", "country",
             "signup_ts", "marketing_consent", "updated_at"),
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

    name: str
    path: str  # absolute glob
    format: str
    columns: Mapping[str, str]
    timestamp_format: str | None = None
    date_format: str | None = None
    timezone: str = "UTC"
    delimiter: str | None = None
    encoding: str = "utf-8"
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
    path: Path
    serving_path: Path
    memory_limit: str = "4GB"
    temp_directory: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class ValidationConfig:
    earliest_date: date = date(2000, 1, 1)
    max_failed_share: float = 0.10


@dataclass(frozen=True)
class ModelConfig:
    time_unit: str = "D"
    clv_horizon_days: int = 365
    churn_horizon_days: int = 90
    annual_discount_rate: float = 0.10
    expected_purchase_horizons_days: tuple[int, ...] = (30, 90, 365)
    penalizer: float = 0.0
    summary_resolution: str = "auto"  # auto | periods | exact
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
class BusinessRules:
    """Rules users tune, as data: the RFM grid, value tiers, lifecycle stages and the
    playbook of recommended actions (defaults documented in README.md)."""

    rfm_grid: Any
    tiers: Any
    lifecycle: Any
    playbook: Any


def _business_rules(data: Mapping[str, Any]) -> BusinessRules:
    from models import rfm, segments

    try:
        rfm_table = _table(data, "rfm")
        _reject_unknown(rfm_table, {"segments"}, "rfm")
        grid = (rfm.RfmGrid.from_dict(rfm_table["segments"], "rfm.segments")
                if "segments" in rfm_table else rfm.DEFAULT_RFM_GRID)
        tiers = segments.TierRules.from_dict(_table(data, "tiers"), "tiers")
        lifecycle = segments.LifecycleRules.from_dict(_table(data, "lifecycle"), "lifecycle")
        playbook_table = _table(data, "playbook")
        playbook = (segments.Playbook.from_dict(playbook_table, "playbook",
                                                segments=grid.segments)
                    if playbook_table else segments.DEFAULT_PLAYBOOK)
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
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    models: ModelConfig = field(default_factory=ModelConfig)
    currency: CurrencyConfig = field(default_factory=CurrencyConfig)
    rules: BusinessRules | None = None
    churn: ChurnConfig = field(default_factory=ChurnConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    # Business rules owned by models/ (RFM grid, tiers, lifecycle, playbook, churn bands,
    # exports, schedule): kept as validated plain mappings and parsed by their owners.
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config_sha256: str = ""

    def section(self, name: str) -> Mapping[str, Any]:
        return self.sections.get(name, MappingProxyType({}))


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate a `crm.toml`; ``None`` means the bundled sample config.

    Raises :class:`ConfigError` naming the key, the value and the allowed values.
    """
    config_path = Path(path).resolve() if path is not None else DEFAULT_CONFIG
    if not config_path.is_file():
        raise ConfigError(f"Config file {config_path} does not exist. Pass --config PATH "
                          "to a crm.toml (see README.md, 'Configure').")
    raw_bytes = config_path.read_bytes()
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{config_path} is not valid TOML: {exc}.") from exc
    settings = settings_from_dict(data, base_dir=config_path.parent, config_path=config_path)
    return _replace(settings, config_sha256=hashlib.sha256(raw_bytes).hexdigest())


def settings_from_dict(data: Mapping[str, Any], base_dir: Path,
                       config_path: Path | None = None) -> Settings:
    """Validate a parsed TOML mapping; relative paths resolve against ``base_dir``."""
    known = {"warehouse", "sources", "validation", "models", "rfm", "tiers", "lifecycle",
             "playbook", "churn", "exports", "schedule", "report", "currency"}
    _reject_unknown(data, known, "")
    base_dir = Path(base_dir).resolve()
    warehouse = _warehouse(_table(data, "warehouse"), base_dir)
    sources_raw = _table(data, "sources")
    if "transactions" not in sources_raw:
        raise ConfigError("[sources.transactions] is missing: a transactions source is "
                          "required (see README.md, 'Add a source').")
    sources = {name: _source(name, _table(sources_raw, name, f"sources.{name}"), base_dir)
               for name in sources_raw}
    validation = _validation(_table(data, "validation"))
    models = _models(_table(data, "models"))
    sections = {name: MappingProxyType(dict(_table(data, name)))
                for name in ("rfm", "tiers", "lifecycle", "playbook", "churn", "exports",
                             "schedule", "report")}
    return Settings(config_path=config_path, base_dir=base_dir, warehouse=warehouse,
                    sources=MappingProxyType(sources), validation=validation, models=models,
                    currency=_currency(_table(data, "currency")),
                    rules=_business_rules(data),
                    churn=_churn(_table(data, "churn")),
                    schedule=_schedule(_table(data, "schedule")),
                    sections=MappingProxyType(sections))


def _schedule(data: Mapping[str, Any]) -> ScheduleConfig:
    _reject_unknown(data, {"cron", "timezone", "deployment_name"}, "schedule")
    cron = _get(data, "cron", "schedule", str, None)
    if cron is not None and len(cron.split()) != 5:
        raise ConfigError(f"schedule.cron must be a 5-field cron expression like "
                          f"'0 6 * * *' (06:00 daily), got {cron!r}.")
    timezone = _get(data, "timezone", "schedule", str, "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"schedule.timezone {timezone!r} is not an IANA time zone.") from exc
    name = _get(data, "deployment_name", "schedule", str, "crm-scheduled")
    return ScheduleConfig(cron=cron, timezone=timezone, deployment_name=name)


def _churn(data: Mapping[str, Any]) -> ChurnConfig:
    _reject_unknown(data, {"band_cutoffs", "min_labelled_customers", "seed"}, "churn")
    cutoffs = _get(data, "band_cutoffs", "churn", list, [0.33, 0.66])
    if (len(cutoffs) != 2 or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                     for c in cutoffs)
            or not 0 < cutoffs[0] < cutoffs[1] < 1):
        raise ConfigError("churn.band_cutoffs must be two increasing probabilities between 0 "
                          f"and 1 (low/medium and medium/high), got {cutoffs!r}.")
    minimum = _get(data, "min_labelled_customers", "churn", int, 200)
    if minimum < 10:
        raise ConfigError(f"churn.min_labelled_customers must be at least 10, got {minimum}.")
    seed = _get(data, "seed", "churn", int, 0)
    return ChurnConfig(band_cutoffs=(float(cutoffs[0]), float(cutoffs[1])),
                       min_labelled_customers=minimum, seed=seed)


def _currency(data: Mapping[str, Any]) -> CurrencyConfig:
    _reject_unknown(data, {"base", "rates"}, "currency")
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
            raise ConfigError(f"currency.rates.{code} must be a positive number (units of "
                              f"{code} per 1 {base}), got {rate!r}.")
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


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        where = f"[{prefix}]" if prefix else "the top level"
        raise ConfigError(f"Unknown key {prefix + '.' if prefix else ''}{unknown[0]} in "
                          f"{where}; allowed: {', '.join(sorted(allowed))}.")


def _get(data: Mapping[str, Any], key: str, prefix: str, kind: type | tuple[type, ...],
         default: Any) -> Any:
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
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _path(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base_dir / p).resolve()


def _warehouse(data: Mapping[str, Any], base_dir: Path) -> WarehouseConfig:
    _reject_unknown(data, {"path", "serving_path", "memory_limit", "temp_directory",
                           "threads"}, "warehouse")
    path = _get(data, "path", "warehouse", str, "data/warehouse/crm.duckdb")
    serving = _get(data, "serving_path", "warehouse", str, "data/serving/crm.duckdb")
    memory_limit = _get(data, "memory_limit", "warehouse", str, "4GB")
    temp_dir = _get(data, "temp_directory", "warehouse", str, None)
    threads = _get(data, "threads", "warehouse", int, None)
    if threads is not None and threads < 1:
        raise ConfigError(f"warehouse.threads must be at least 1, got {threads}.")
    if _path(path, base_dir) == _path(serving, base_dir):
        raise ConfigError("warehouse.path and warehouse.serving_path must differ: BI tools "
                          "read the serving copy while the pipeline writes its own.")
    return WarehouseConfig(path=_path(path, base_dir), serving_path=_path(serving, base_dir),
                           memory_limit=memory_limit,
                           temp_directory=_path(temp_dir, base_dir) if temp_dir else None,
                           threads=threads)


def _source(name: str, data: Mapping[str, Any], base_dir: Path) -> SourceConfig:
    prefix = f"sources.{name}"
    if name not in CANONICAL_FIELDS:
        raise ConfigError(f"[{prefix}] is not a known source; allowed: "
                          f"{', '.join(CANONICAL_FIELDS)}.")
    _reject_unknown(data, {"path", "format", "columns", "timestamp_format", "date_format",
                           "timezone", "delimiter", "encoding", "quote", "header", "names",
                           "decimal_comma", "missing_values", "keep_identical_lines"}, prefix)
    path = _get(data, "path", prefix, str, None)
    if not path:
        raise ConfigError(f"{prefix}.path is missing: a file or glob, relative to the "
                          "config file.")
    fmt = _get(data, "format", prefix, str, _guess_format(path))
    if fmt not in FORMATS:
        raise ConfigError(f"{prefix}.format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    columns = _table(data, "columns", f"{prefix}.columns")
    required, optional = CANONICAL_FIELDS[name]
    for canonical, column in columns.items():
        if canonical not in required + optional:
            raise ConfigError(f"{prefix}.columns.{canonical} is not a canonical field of "
                              f"{name}; allowed: {', '.join(required + optional)}.")
        if not isinstance(column, str) or not column:
            raise ConfigError(f"{prefix}.columns.{canonical} must be a source column name, "
                              f"got {column!r}.")
    derivable = {"amount"} if {"quantity", "unit_price"} <= set(columns) else set()
    for canonical in required:
        if canonical not in columns and canonical not in derivable:
            raise ConfigError(f"{prefix}.columns.{canonical} is missing: it is a required "
                              f"field of {name}. Map it to the export's column name.")
    timezone = _get(data, "timezone", prefix, str, "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{prefix}.timezone {timezone!r} is not an IANA time zone "
                          "(e.g. 'UTC', 'Europe/Berlin').") from exc
    encoding = _get(data, "encoding", prefix, str, "utf-8").lower().replace("_", "-")
    if encoding in ("utf8", "utf-8-sig"):
        encoding = "utf-8"
    if encoding in ("latin1", "iso-8859-1", "iso8859-1"):
        encoding = "latin-1"
    if encoding not in ("utf-8", "latin-1", "utf-16", "cp1252"):
        raise ConfigError(f"{prefix}.encoding must be one of utf-8, latin-1, cp1252, utf-16, "
                          f"got {encoding!r}.")
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
        raise ConfigError(f"{prefix}.names is missing: a file without a header row "
                          "(header = false) needs its column names listed.")
    missing_values = _get(data, "missing_values", prefix, list, None)
    if missing_values is not None and not all(isinstance(v, str) for v in missing_values):
        raise ConfigError(f"{prefix}.missing_values must be a list of strings such as "
                          f'["NA", "NULL"], got {missing_values!r}.')
    return SourceConfig(
        name=name, path=str(_path(path, base_dir)), format=fmt,
        columns=MappingProxyType(dict(columns)),
        timestamp_format=_get(data, "timestamp_format", prefix, str, None),
        date_format=_get(data, "date_format", prefix, str, None),
        timezone=timezone, delimiter=delimiter, encoding=encoding, quote=quote,
        header=header, names=tuple(names) if names else None,
        decimal_comma=_get(data, "decimal_comma", prefix, bool, False),
        missing_values=(tuple(missing_values) if missing_values is not None
                        else SourceConfig.missing_values),
        keep_identical_lines=_get(data, "keep_identical_lines", prefix, bool, False),
    )


def _guess_format(path: str) -> str:
    lower = path.lower()
    for suffix, fmt in ((".parquet", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                        (".json", "jsonl"), (".txt", "text")):
        if lower.endswith(suffix):
            return fmt
    return "csv"


def _validation(data: Mapping[str, Any]) -> ValidationConfig:
    _reject_unknown(data, {"earliest_date", "max_failed_share"}, "validation")
    earliest = data.get("earliest_date", ValidationConfig.earliest_date)
    if isinstance(earliest, str):
        try:
            earliest = date.fromisoformat(earliest)
        except ValueError as exc:
            raise ConfigError("validation.earliest_date must be a date like 2000-01-01, "
                              f"got {earliest!r}.") from exc
    if not isinstance(earliest, date):
        raise ConfigError(f"validation.earliest_date must be a date, got {earliest!r}.")
    share = _get(data, "max_failed_share", "validation", (int, float), 0.10)
    if not 0 <= share <= 1:
        raise ConfigError(f"validation.max_failed_share must be between 0 and 1, got {share}.")
    return ValidationConfig(earliest_date=earliest, max_failed_share=float(share))


def _models(data: Mapping[str, Any]) -> ModelConfig:
    d = ModelConfig()
    allowed = {f for f in ModelConfig.__dataclass_fields__}
    _reject_unknown(data, allowed, "models")
    unit = _get(data, "time_unit", "models", str, d.time_unit)
    if unit not in TIME_UNITS:
        raise ConfigError(f"models.time_unit must be one of D, W, got {unit!r}.")
    resolution = _get(data, "summary_resolution", "models", str, d.summary_resolution)
    if resolution not in ("auto", "periods", "exact"):
        raise ConfigError("models.summary_resolution must be one of auto, periods, exact, "
                          f"got {resolution!r}.")
    values: dict[str, Any] = {"time_unit": unit, "summary_resolution": resolution}
    for key in ("clv_horizon_days", "churn_horizon_days", "holdout_days", "min_customers",
                "min_repeat_buyers", "min_history_days"):
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
    horizons = _get(data, "expected_purchase_horizons_days", "models", list,
                    list(d.expected_purchase_horizons_days))
    if not horizons or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0
                               for h in horizons):
        raise ConfigError("models.expected_purchase_horizons_days must be a list of positive "
                          f"whole numbers of days, got {horizons!r}.")
    values.update(annual_discount_rate=float(rate), penalizer=float(penalizer),
                  expected_purchase_horizons_days=tuple(sorted(set(horizons))))
    return ModelConfig(**values)
