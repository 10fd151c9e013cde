"""Validate each table of `crm.toml` into its section class.

One function per section (``_warehouse``, ``_source``, ``_models``, ...) and the helpers
they share. :func:`pipelines.config.settings_from_dict` calls them; every error names the
offending key and what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.rfm import DEFAULT_RFM_GRID, RfmGrid
from models.segments import DEFAULT_PLAYBOOK, LifecycleRules, Playbook, TierRules
from pipelines.config_sections import (
    CANONICAL_FIELDS,
    ENCODINGS,
    FORMATS,
    RFM_KEYS,
    RUNNERS,
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
    _toml_default,
)
from pipelines.errors import ConfigError


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


def _erasure(data: Mapping[str, Any]) -> ErasureConfig:
    _reject_unknown(data, _keys(ErasureConfig), "erasure")
    names = {
        key: _get(data, key, "erasure", str, getattr(ErasureConfig, key))
        for key in ("key_env", "old_keys_env")
    }
    for key, name in names.items():
        if not name or not name.replace("_", "").isalnum():
            raise ConfigError(
                f"erasure.{key} must name an environment variable (letters, digits, _), "
                f"got {name!r}. The key itself never goes into crm.toml."
            )
    block = _get(data, "key_block", "erasure", str, None)
    return ErasureConfig(key_block=block or None, **names)


def _permissions(data: Mapping[str, Any]) -> PermissionsConfig:
    _reject_unknown(data, _keys(PermissionsConfig), "permissions")
    readers = _get(data, "readers", "permissions", str, "owner")
    if readers not in ("owner", "group"):
        raise ConfigError(
            f'permissions.readers must be "owner" (files 0600, folders 0700) or "group" '
            f"(0640/0750), got {readers!r}."
        )
    group = _get(data, "group", "permissions", str, None)
    if group is not None:
        import grp

        try:
            grp.getgrnam(group)
        except KeyError:
            raise ConfigError(
                f"permissions.group {group!r} is not a group on this machine."
            ) from None
        if readers != "group":
            raise ConfigError(
                f'permissions.group {group!r} needs permissions.readers = "group" (with '
                '"owner" nobody but the pipeline\'s user can read the files).'
            )
    return PermissionsConfig(readers=readers, group=group)


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


def _execution(data: Mapping[str, Any], base_dir: Path) -> ExecutionConfig:
    """``[execution]``; a relative local ``storage`` resolves against the config's folder,
    a URL (``s3://...``) is kept as written."""
    _reject_unknown(data, _keys(ExecutionConfig), "execution")
    d = ExecutionConfig()
    runner = _get(data, "runner", "execution", str, d.runner)
    if runner not in RUNNERS:
        raise ConfigError(f"execution.runner must be one of {', '.join(RUNNERS)}, got {runner!r}.")
    values: dict[str, Any] = {"runner": runner}
    for key, top in (("workers", 1024), ("buckets", 4096)):
        v = _get(data, key, "execution", int, getattr(d, key))
        if not 1 <= v <= top:
            raise ConfigError(f"execution.{key} must be a whole number from 1 to {top}, got {v}.")
        values[key] = v
    address = _get(data, "address", "execution", str, None)
    if address is not None and "://" not in address:
        raise ConfigError(
            "execution.address must be a Dask scheduler address such as "
            f"'tcp://host:8786', got {address!r}."
        )
    storage = _get(data, "storage", "execution", str, None)
    if storage is not None:
        if not storage.strip():
            raise ConfigError("execution.storage must be a folder or a URL, got an empty string.")
        if "://" not in storage:
            storage = str((base_dir / Path(storage).expanduser()).resolve())
    return ExecutionConfig(address=address, storage=storage, **values)


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
    every = _get(data, "retrain_every_days", "churn", int, 7)
    if not 1 <= every <= 366:
        raise ConfigError(
            f"churn.retrain_every_days must be a whole number of days from 1 to 366, got {every}."
        )
    return ChurnConfig(
        band_cutoffs=(float(cutoffs[0]), float(cutoffs[1])),
        min_labelled_customers=minimum,
        seed=seed,
        retrain_every_days=every,
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


def _table(data: Mapping[str, Any], key: str, label: str | None = None) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{label or key}] must be a table, got {value!r}.")
    return value


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


def _formats(data: Mapping[str, Any], key: str, prefix: str) -> str | tuple[str, ...] | None:
    """A strptime format, or a non-empty list of them (kept as a tuple, tried in order)."""
    value = _get(data, key, prefix, (str, list), None)
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(
                f"{prefix}.{key} must be a strptime format or a non-empty list of them, "
                f'such as ["%d/%m/%Y %H:%M", "%Y-%m-%d"], got {value!r}.'
            )
        return tuple(value)
    if value == "":
        raise ConfigError(f"{prefix}.{key} is empty: leave it out for ISO 8601.")
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
    warn_after, error_after = _freshness(data, name, prefix, columns)
    return SourceConfig(
        name=name,
        path=str(_path(path, base_dir)),
        format=fmt,
        columns=MappingProxyType(dict(columns)),
        timestamp_format=_formats(data, "timestamp_format", prefix),
        date_format=_formats(data, "date_format", prefix),
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
        warn_after_days=warn_after,
        error_after_days=error_after,
    )


def _freshness(
    data: Mapping[str, Any], name: str, prefix: str, columns: Mapping[str, str]
) -> tuple[int | None, int | None]:
    """``warn_after_days`` and ``error_after_days`` of one source: whole days >= 0, warn
    not after error, and for customers a mapped timestamp to measure freshness by."""
    days = {}
    for key in ("warn_after_days", "error_after_days"):
        value = _get(data, key, prefix, int, None)
        if value is not None and value < 0:
            raise ConfigError(f"{prefix}.{key} must be a whole number of days >= 0, got {value}.")
        days[key] = value
    warn_after, error_after = days["warn_after_days"], days["error_after_days"]
    if warn_after is not None and error_after is not None and warn_after > error_after:
        raise ConfigError(
            f"{prefix}.warn_after_days ({warn_after}) must not be more than "
            f"{prefix}.error_after_days ({error_after}): a source warns before it stops the run."
        )
    # Customers are dated by updated_at, else signup_ts; without either there is no
    # newest row to measure, and every run would fail as "no rows".
    if (
        name == "customers"
        and (warn_after is not None or error_after is not None)
        and not {"updated_at", "signup_ts"} & set(columns)
    ):
        key = "warn_after_days" if warn_after is not None else "error_after_days"
        raise ConfigError(
            f"{prefix}.{key} needs {prefix}.columns.updated_at or "
            f"{prefix}.columns.signup_ts mapped: customers are dated by them."
        )
    return warn_after, error_after


def _guess_format(path: str) -> str:
    lower = path.lower()
    for suffix, fmt in (
        (".parquet", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".txt", "text"),
        (".xlsx", "excel"),
        (".xlsm", "excel"),
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
    horizons = {
        key: _positive_day_list(data, key, list(getattr(d, key)))
        for key in ("expected_purchase_horizons_days", "order_probability_horizons_days")
    }
    values.update(
        annual_discount_rate=float(rate),
        penalizer=float(penalizer),
        **{key: tuple(sorted(set(days))) for key, days in horizons.items()},
    )
    return ModelConfig(**values)


def _positive_day_list(data: Mapping[str, Any], key: str, default: list[int]) -> list[int]:
    """The non-empty list of positive whole numbers of days at ``models.<key>``."""
    days = _get(data, key, "models", list, default)
    if not days or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in days):
        raise ConfigError(
            f"models.{key} must be a list of positive whole numbers of days, got {days!r}."
        )
    return days
