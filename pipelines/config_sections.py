"""The sections of `crm.toml` as frozen dataclasses, and the facts about them.

One class per table of crm.toml (:data:`SECTIONS`); its fields are the table's keys. The
validators (pipelines/config_checks.py) build these classes, and the JSON Schema
(pipelines/config_schema.py) is generated from them. Import them from
:mod:`pipelines.config`, the public face, which re-exports every name here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

from models.rfm import DEFAULT_RFM_GRID, RfmGrid
from models.segments import DEFAULT_PLAYBOOK, LifecycleRules, Playbook, TierRules

FORMATS = ("csv", "parquet", "jsonl", "text", "excel")
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
    # strptime formats, tried in order (a list when one export mixes several); absent: ISO 8601
    timestamp_format: str | tuple[str, ...] | None = field(
        default=None,
        metadata={
            "description": "strptime format of the timestamps, or a list of them tried in "
            "order (the first that parses wins); absent: ISO 8601"
        },
    )
    date_format: str | tuple[str, ...] | None = field(
        default=None,
        metadata={
            "description": "strptime format of date-only fields (birth_date), or a list "
            "tried in order; absent: ISO 8601"
        },
    )
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
    # Source freshness, as dbt's: the run warns, or stops before publishing, when the
    # source's newest row is more than this many days older than the as-of date
    # (pipelines/load/freshness.py). Unset: not checked.
    warn_after_days: int | None = field(
        default=None,
        metadata={
            "minimum": 0,
            "description": "warn when the newest row is more than this many days before "
            "the as-of date",
        },
    )
    error_after_days: int | None = field(
        default=None,
        metadata={
            "minimum": 0,
            "description": "stop the run before publishing when the newest row is more than "
            "this many days before the as-of date",
        },
    )


@dataclass(frozen=True)
class WarehouseConfig:
    path: Path = field(metadata={"toml_default": "data/warehouse/crm.duckdb"})
    serving_path: Path = field(metadata={"toml_default": "data/serving/crm.duckdb"})
    memory_limit: str = "4GB"
    temp_directory: Path | None = None
    threads: int | None = None


@dataclass(frozen=True)
class ValidationConfig:
    # Timestamps before this are implausible. The default accepts real history back to 1970
    # (CDNOW is 1997) and still catches the sentinels exports write for "no date":
    # 0001-01-01, 1899-12-30 and 1900-01-01 (spreadsheet day zero) and 1970-01-01 (Unix
    # time zero), which is why it is the day after.
    earliest_date: date = field(
        default=date(1970, 1, 2),
        metadata={
            "description": "timestamps before this date are quarantined; the default "
            "catches the sentinel dates 0001-01-01, 1899-12-30, 1900-01-01 and 1970-01-01"
        },
    )
    max_failed_share: float = 0.10


@dataclass(frozen=True)
class ModelConfig:
    time_unit: str = field(default="D", metadata={"enum": tuple(TIME_UNITS)})
    clv_horizon_days: int = 365
    churn_horizon_days: int = 90
    annual_discount_rate: float = 0.10
    expected_purchase_horizons_days: tuple[int, ...] = (30, 90, 365)
    order_probability_horizons_days: tuple[int, ...] = (30, 90)
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
    """``[churn]``: ``retrain_every_days`` is the calendar cadence of training (days
    since 2000-01-03, a Monday, in steps of it); between training dates the saved model
    scores."""

    band_cutoffs: tuple[float, float] = (0.33, 0.66)
    min_labelled_customers: int = 200
    seed: int = 0
    retrain_every_days: int = field(default=7, metadata={"minimum": 1, "maximum": 366})


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
class PermissionsConfig:
    """``[permissions]``: who may read the files and folders the pipeline writes (the
    working and serving databases, exports, report). ``readers = "owner"`` (default):
    files 0600, folders 0700. ``readers = "group"``: files 0640, folders 0750, and with
    ``group`` (a group name, e.g. the BI or marketing readers) each gets that group."""

    readers: str = field(default="owner", metadata={"choices": ("owner", "group")})
    group: str | None = None

    @property
    def file_mode(self) -> int:
        return 0o640 if self.readers == "group" else 0o600

    @property
    def dir_mode(self) -> int:
        return 0o750 if self.readers == "group" else 0o700


RUNNERS = ("local", "dask")


@dataclass(frozen=True)
class ExecutionConfig:
    """``[execution]``: where the per-customer stages run (issue 13). ``runner = "local"``
    (default): in the flow process, as always. ``runner = "dask"``: per customer bucket on
    Dask workers through prefect-dask's DaskTaskRunner, on a scheduler at ``address`` or,
    without one, on a LocalCluster of ``workers`` processes. ``buckets``: customer
    partitions (a stable hash of the resolved customer id). ``storage``: where the bucket
    Parquet files go, a local folder or an fsspec URL every worker can reach; absent: a
    ``buckets`` folder beside the warehouse."""

    runner: str = field(default="local", metadata={"enum": RUNNERS})
    workers: int = field(default=2, metadata={"minimum": 1, "maximum": 1024})
    address: str | None = None
    buckets: int = field(default=16, metadata={"minimum": 1, "maximum": 4096})
    storage: str | None = None


@dataclass(frozen=True)
class ErasureConfig:
    """``[erasure]``: where the erasure key comes from (see pipelines/erasure_keys.py).
    Tombstones are keyed hashes; the key is never stored in the warehouse. ``key_env``
    names the environment variable holding it, ``old_keys_env`` the one holding retired
    keys (comma-separated) that tombstones still use, ``key_block`` a Prefect Secret block
    to read the key from instead (loaded only when set)."""

    key_env: str = "CRM_ERASURE_KEY"
    old_keys_env: str = "CRM_ERASURE_OLD_KEYS"
    key_block: str | None = None


@dataclass(frozen=True)
class BusinessRules:
    """Rules users tune, as data: the RFM grid (``[rfm]``), value tiers, lifecycle stages and
    the playbook of recommended actions (defaults documented in README.md). The classes
    live in models/, which validates their values."""

    rfm_grid: RfmGrid = DEFAULT_RFM_GRID
    tiers: TierRules = field(default_factory=TierRules)
    lifecycle: LifecycleRules = field(default_factory=LifecycleRules)
    playbook: Playbook = DEFAULT_PLAYBOOK


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
        "permissions": PermissionsConfig,
        "erasure": ErasureConfig,
        "execution": ExecutionConfig,
    }
)


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
