"""Benchmark the pipeline's steps: wall time, CPU time, peak memory and rows per second.

    .venv/bin/python benchmarks/run.py --size S            # 10k customers
    .venv/bin/python benchmarks/run.py --size L --no-events
    .venv/bin/python benchmarks/run.py --size M --stages ingest,clean --profile
    .venv/bin/python benchmarks/run.py --size L --from-warehouse PATH/crm.duckdb
    .venv/bin/python benchmarks/run.py --size M --notebook-only

The steps are the plain functions that ``flows.py`` calls, imported and called in the
flow's order; nothing of theirs is copied here. Each step runs once, in this process,
against a fresh warehouse in a temporary directory (or a copy of an existing one whose
core tables are built: ``--from-warehouse``). Synthetic exports are generated once
per size and seed into ``benchmarks/data/<size>/`` and reused. Results go to
``benchmarks/results/<size>-<timestamp>.json`` and a table is printed.

After the pipeline's stages, ``benchmarks/notebook.py`` (the notebook baseline: pandas +
lifetimes the way an analyst would do it) runs on the same transactions file in a
subprocess, so its memory is its own; its figures go into the same JSON and a
side-by-side table is printed (``--no-notebook`` skips it).

Memory: the kernel's high-water mark of this process (``VmHWM``) is reset before every
stage (``echo 5 > /proc/self/clear_refs``) and read after it, so each stage's peak RSS is
its own, and includes DuckDB's buffers, Arrow and pandas, since all of them live in this
process. A thread also samples RSS every 50 ms as a cross-check, and the size of
DuckDB's spill directory.

To add a stage, write a function taking the :class:`Bench` and returning
:class:`StageResult`, decorate it with ``@stage("name", requires=(...))`` below the
existing ones, in pipeline order. ``--stages`` defaults to every registered stage.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import functools
import hashlib
import io
import json
import os
import platform
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# --runner dask: the bucket stages are Prefect flows, which start Prefect's temporary
# server; on a loaded 2-core machine it takes longer than the default 20 s to answer
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_IMPORTS_STARTED = time.perf_counter()
import duckdb  # noqa: E402
from probes import (  # noqa: E402
    Sampler,
    cpu_seconds,
    current_rss,
    machine_busy_seconds,
    peak_rss,
    process_io,
    reset_peak_rss,
)

from pipelines import erasure, execution, marts, runlog, sqlrun, steps
from pipelines.config import load_settings  # noqa: E402
from pipelines.core import build as core
from pipelines.load import clean, ingest, quality
from pipelines.publish import exports, journal, report
from pipelines.publish import serving as publish
from pipelines.scoring import churn, segments, value
from pipelines.warehouse import connect_warehouse  # noqa: E402

# The pipeline's modules (DuckDB, polars, lifetimes, scikit-learn, matplotlib, ...); GX is
# imported lazily, in the timed setup.
IMPORT_SECONDS = time.perf_counter() - _IMPORTS_STARTED

BENCH_DIR = ROOT / "benchmarks"
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
SAMPLE_CONFIG = ROOT / "data" / "sample" / "crm.toml"
NOTEBOOK = BENCH_DIR / "notebook.py"

SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
DEFAULT_SEED = 42

# Issue target: ingest + validate + clean + dedupe of ~10M transaction rows from CSV.
TARGET_STAGES = ("ingest", "clean", "validate", "core")
TARGET_SECONDS = 60.0
TARGET_PEAK_BYTES = 6 * 1024**3

ALL_SOURCES = ("transactions", "customers", "events")
# results file names by the sources used (other sets are joined with +)
SOURCE_SUFFIXES = {
    ALL_SOURCES: "",
    ("transactions", "customers"): "-noevents",
    ("transactions",): "-txonly",
}

PACKAGES = (
    "duckdb",
    "polars",
    "pyarrow",
    "pandas",
    "numpy",
    "great-expectations",
    "phonenumbers",
    "prefect",
    "lifetimes",
    "scikit-learn",
)


# --- stage registry -----------------------------------------------------------------------


@dataclass
class StageResult:
    """What a stage reports: rows it consumed and produced, plus anything worth keeping."""

    rows_in: int
    rows_out: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Bench], StageResult]
    requires: tuple[str, ...]
    doc: str


STAGES: list[Stage] = []


def stage(name: str, requires: tuple[str, ...] = ()):
    """Register a stage; stages run in registration order (the flow's order)."""

    def register(fn: Callable[[Bench], StageResult]) -> Callable[[Bench], StageResult]:
        unknown = set(requires) - {s.name for s in STAGES}
        if unknown:
            raise ValueError(f"stage {name!r} requires unregistered stages {sorted(unknown)}")
        STAGES.append(Stage(name, fn, tuple(requires), (fn.__doc__ or "").strip()))
        return fn

    return register


@dataclass
class Bench:
    """What every stage shares: the flow's own :class:`steps.RunContext` (settings, the
    open warehouse, run id, as-of date once core has resolved it), so a stage can call a
    step exactly as ``flows.py`` does, and a scratch dict (``state``) for anything else a
    later stage needs."""

    ctx: steps.RunContext
    state: dict[str, Any] = field(default_factory=dict)
    substeps: list[dict] = field(default_factory=list)
    _open: list[str] = field(default_factory=list)  # names of the substeps running now

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        return self.ctx.con

    @property
    def settings(self):
        return self.ctx.settings

    @property
    def run_id(self) -> str:
        return self.ctx.run_id

    @property
    def started_at(self) -> datetime:
        return self.ctx.started_at

    @property
    def current_substep(self) -> str | None:
        return self._open[-1] if self._open else None

    @contextlib.contextmanager
    def substep(self, name: str):
        """Time one part of a stage (one source, one function) within the stage. Substeps
        nest: each record names its ``parent`` (None at the top) and ``depth``."""
        parent = self.current_substep
        self._open.append(name)
        t0, c0 = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self._open.pop()
            self.substeps.append(
                {
                    "name": name,
                    "parent": parent,
                    "depth": len(self._open),
                    "wall_s": time.perf_counter() - t0,
                    "cpu_s": cpu_seconds() - c0,
                }
            )

    def scalar(self, sql: str, params: list | None = None) -> Any:
        # fetchall, not fetchone: DuckDB 2 refuses further work on a connection whose last
        # result was not read to the end.
        return self.con.execute(sql, params or []).fetchall()[0][0]

    def count(self, table: str) -> int:
        exists = self.scalar(
            "select count(*) from duckdb_tables() where schema_name || '.' || table_name = ?",
            [table],
        )
        return self.scalar(f"select count(*) from {table}") if exists else 0


def _sources(b: Bench) -> list[str]:
    return list(b.settings.sources)


@stage("ingest")
def run_ingest(b: Bench) -> StageResult:
    """pipelines.load.ingest.ingest_source for every configured source (raw.*), then
    pipelines.erasure.apply_tombstones, both under the erasure key ring."""
    reports = []
    ring = erasure.key_ring(b.settings)
    for source in b.settings.sources.values():
        with b.substep(f"ingest_source[{source.name}]"):
            reports += ingest.ingest_source(b.con, source, b.run_id, b.started_at, ring=ring)
    # forgotten customers (crm forget) must not come back with a re-sent export
    with b.substep("apply_tombstones"):
        erasure.apply_tombstones(b.con, b.run_id, ring=ring)
    b.state["file_reports"] = reports
    raw = {name: b.count(f"raw.{name}") for name in _sources(b)}
    return StageResult(
        rows_in=sum(r.rows_read for r in reports),
        rows_out=sum(raw.values()),
        detail={
            "files": [
                {
                    "source": r.source,
                    "file": Path(r.path).name,
                    "status": r.status,
                    "reader": r.reader,
                    "rows_read": r.rows_read,
                    "rows_rejected": r.rows_rejected,
                }
                for r in reports
            ],
            "raw_rows": raw,
        },
    )


@stage("clean", requires=("ingest",))
def run_clean(b: Bench) -> StageResult:
    """pipelines.load.clean.build_staging (staging.*, phones to E.164)."""
    raw = sum(b.count(f"raw.{name}") for name in clean.STAGING_ORDER)
    counts = clean.build_staging(b.con, b.settings, run_id=b.run_id).rows
    return StageResult(rows_in=raw, rows_out=sum(counts.values()), detail={"staging_rows": counts})


@stage("validate", requires=("clean",))
def run_validate(b: Bench) -> StageResult:
    """pipelines.load.quality.validate_pending: each source's suite over the rows staged
    this run, then the batch limits (quarantine.*)."""
    reports = quality.validate_pending(b.con, b.settings, b.run_id)
    checked = sum(r.rows_checked for r in reports)
    quarantined = sum(r.rows_quarantined for r in reports)
    return StageResult(
        rows_in=checked,
        rows_out=checked - quarantined,
        detail={
            "rows_quarantined": {r.source: r.rows_quarantined for r in reports},
            "fields_blanked": {r.source: r.fields_blanked for r in reports},
            "failures_by_rule": {
                r.source: r.failures_by_rule for r in reports if r.failures_by_rule
            },
        },
    )


@stage("core", requires=("validate",))
def run_core(b: Bench) -> StageResult:
    """pipelines.core.build.build_core (identity resolution, dedupe, reconciliation) and the
    as-of date, as the flow's core task does."""
    valid = sum(
        b.count(f"staging.{name}") - b.count(f"quarantine.{name}")
        for name in ("transactions", "customers", "events")
    )
    report = core.build_core(b.con, b.run_id)
    as_of = runlog.resolve_as_of(b.con, b.ctx.requested_as_of)
    b.ctx = dataclasses.replace(b.ctx, as_of=as_of)
    # [execution] runner = "dask": the bucket files the value step's SQL reads
    execution.write_core_buckets(b.con, b.settings, b.run_id)
    kept = {t: b.count(f"core.{t}") for t in ("transaction_lines", "customer_records", "events")}
    unbalanced = b.scalar("select count(*) from audit.file_reconciliation where not is_balanced")
    return StageResult(
        rows_in=valid,
        rows_out=sum(kept.values()),
        detail={
            "kept_rows": kept,
            "orders": report.orders,
            "customers": report.customers,
            "events": report.events,
            "duplicates_by_source": report.duplicates_by_source,
            "identity": asdict(report.identity),
            "as_of": str(as_of),
            "files_unbalanced": unbalanced,
        },
    )


# The flow's later tasks, in its order. flows.py's publish task is split into its three
# calls (export, serving, report) so that each has its own time and memory.


@stage("value", requires=("core",))
def run_value(b: Bench) -> StageResult:
    """pipelines.scoring.value.score_customer_value (RFM, BG/NBD + Gamma-Gamma CLV, holdout
    check). Its parts are timed as substeps through TRACED_FUNCTIONS and the SQL timer."""
    rep = value.score_customer_value(b.con, b.settings, b.ctx.as_of, b.run_id)
    b.ctx = dataclasses.replace(b.ctx, clv_resolution=rep.resolution, clv_model=rep.clv_model)
    return StageResult(
        rows_in=b.count("core.transactions"),
        rows_out=rep.customers,
        detail={
            "resolution": rep.resolution,
            "customers": rep.customers,
            "repeat_buyers": rep.repeat_buyers,
            "clv_status": rep.clv_status,
            "clv_message": rep.clv_message,
            "parameters": rep.parameters.to_dicts() if rep.parameters.height else [],
            "segment_counts": rep.segment_counts,
        },
    )


@stage("churn", requires=("value",))
def run_churn(b: Bench) -> StageResult:
    """pipelines.scoring.churn.score_churn_risk with pipelines.scoring.value.make_bgnbd_scorer (each call
    of the scorer, one fit of the chosen customer-base model per cutoff, is a substep)."""
    # the customer-base model the value stage chose, as the churn step uses it
    model = b.ctx.clv_model or "bgnbd"
    scorer = value.make_bgnbd_scorer(b.con, b.settings, b.ctx.as_of, b.ctx.clv_resolution, model)

    def timed_scorer(cutoff):
        with b.substep(f"bgnbd_scorer[{cutoff}]"):
            return scorer(cutoff)

    result = churn.score_churn_risk(
        b.con,
        b.settings,
        b.ctx.as_of,
        b.run_id,
        timed_scorer,
        bgnbd_settings=f"{b.ctx.clv_resolution} {model}",
    )
    return StageResult(
        rows_in=b.count("core.transactions"),
        rows_out=result.scores.height,
        detail={
            "published_scorer": result.published_scorer,
            "fallback_reason": result.fallback_reason,
            "model_beats_baselines": result.model_beats_baselines,
            "message": result.message,
        },
    )


@stage("segments", requires=("churn",))
def run_segments(b: Bench) -> StageResult:
    """pipelines.scoring.segments.build_customer_segments (tier, lifecycle stage, recommended
    action)."""
    counts = segments.build_customer_segments(b.con, b.settings, b.ctx.as_of)
    return StageResult(
        rows_in=b.count("models.segment_inputs"),
        rows_out=b.count("models.customer_segments"),
        detail={"value_tier": counts["value_tier"]},
    )


@stage("marts", requires=("segments",))
def run_marts(b: Bench) -> StageResult:
    """pipelines.marts.build_marts (customer_360 and the history marts)."""
    rows = marts.build_marts(b.con, b.ctx.as_of, b.run_id, b.ctx.clv_resolution)
    return StageResult(
        rows_in=b.count("models.customer_segments"),
        rows_out=sum(rows.values()),
        detail={"rows": rows},
    )


def _publish_one(b: Bench, output: journal.StagedOutput) -> None:
    """Swap one staged output in under the publish journal, as the publish step swaps all
    of its outputs together (journal.publish_staged)."""
    journal.publish_staged(b.con, b.settings, b.run_id, b.ctx.as_of, [output])


@stage("export", requires=("marts",))
def run_export(b: Bench) -> StageResult:
    """pipelines.publish.exports.stage_exports (one CSV + Parquet file per list, the
    marketing files, manifest), then its swap into place."""
    staged = exports.stage_exports(b.con, b.settings, b.ctx.as_of, b.run_id)
    rep = staged.report
    _publish_one(b, journal.StagedOutput("exports", str(staged.directory), str(rep.directory)))
    files = [f for f in rep.directory.rglob("*") if f.is_file()]
    return StageResult(
        rows_in=b.count("marts.customer_360"),
        rows_out=sum(rep.rows_by_list.values()),
        detail={
            "rows_by_list": dict(rep.rows_by_list),
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
        },
    )


@stage("serving", requires=("marts",))
def run_serving(b: Bench) -> StageResult:
    """pipelines.publish.serving.stage_serving_database (marts.* copied into a new serving
    DB), then its swap into place."""
    tables = [
        r[0]
        for r in b.con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() "
            "where schema_name = 'marts' and not temporary"
        ).fetchall()
    ]
    rows = sum(b.count(t) for t in tables)
    staged = publish.stage_serving_database(b.con, b.settings, b.run_id)
    path = b.settings.warehouse.serving_path
    _publish_one(b, journal.StagedOutput("serving", str(staged), str(path)))
    return StageResult(
        rows_in=rows, rows_out=rows, detail={"tables": len(tables), "bytes": path.stat().st_size}
    )


@stage("report", requires=("marts",))
def run_report(b: Bench) -> StageResult:
    """pipelines.publish.report.stage_report to report.report_path (the HTML report), then
    its swap into place (the run's Data Docs site, which the publish step stages with
    the report, is not built or timed here)."""
    final = report.report_path(b.settings, b.ctx.as_of)
    staged = report.stage_report(
        b.con,
        final,
        run_id=b.run_id,
        as_of=b.ctx.as_of,
        currency=b.settings.currency.base,
    )
    _publish_one(b, journal.StagedOutput("report", str(staged), str(final)))
    return StageResult(
        rows_in=b.count("marts.customer_360"), rows_out=1, detail={"bytes": final.stat().st_size}
    )


# Stages a warehouse given with --from-warehouse has already run.
CORE_STAGES = ("ingest", "clean", "validate", "core")


def resolve_stages(
    names: list[str] | None, done: tuple[str, ...] = ()
) -> tuple[list[Stage], list[str]]:
    """Stages to run, in pipeline order, with every prerequisite added. Returns the
    stages and the names that were added because a requested stage needs them. Stages in
    ``done`` (already run in the warehouse, --from-warehouse) are neither run nor added."""
    by_name = {s.name: s for s in STAGES}
    wanted = set(names or (set(by_name) - set(done)))
    unknown = wanted - set(by_name)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(by_name)}")
    again = wanted & set(done)
    if again:
        raise SystemExit(
            f"stage(s) {sorted(again)} are already built in the warehouse "
            "given with --from-warehouse; leave them out of --stages"
        )
    added: list[str] = []
    todo = list(wanted)
    while todo:
        for req in by_name[todo.pop()].requires:
            if req not in wanted and req not in done:
                wanted.add(req)
                added.append(req)
                todo.append(req)
    return [s for s in STAGES if s.name in wanted], sorted(added)


# --- data and config ----------------------------------------------------------------------


def ensure_data(size: str, customers: int, seed: int) -> dict:
    """Generate the exports for ``size`` once; reuse them while customers and seed match."""
    out = DATA_DIR / size
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        files_ok = all((out / f).exists() for f in manifest.get("files", {}))
        if manifest.get("customers") == customers and manifest.get("seed") == seed and files_ok:
            manifest["reused"] = True
            return manifest
    if out.exists():
        shutil.rmtree(out)
    from pipelines.sample import generate_sample

    print(
        f"generating {size} data ({customers:,} customers, seed {seed}) into {out} ...",
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    report = generate_sample(out, customers=customers, seed=seed, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    files = {}
    for role in ("transactions", "customers", "events"):
        path = Path(report.paths[role])
        files[path.name] = {"source": role, "rows": report.rows[role], "bytes": path.stat().st_size}
    manifest = {
        "size": size,
        "customers": customers,
        "seed": seed,
        "generated_at": _now_iso(),
        "generate_seconds": round(seconds, 1),
        "files": files,
        "people": {
            "buyers": report.customers,
            "prospects": report.prospects,
            "duplicate_records": report.duplicate_records,
            "completed_orders": report.completed_orders,
        },
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["reused"] = False
    return manifest


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict, prefix: str = "") -> str:
    """Minimal TOML writer for crm.toml-shaped data (scalars, lists, nested tables)."""
    scalars = [
        f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)
    ]
    out = []
    if prefix and (scalars or not any(isinstance(v, dict) for v in data.values())):
        out.append(f"[{prefix}]")
    out += scalars
    text = "\n".join(out) + ("\n" if out else "")
    for k, v in data.items():
        if isinstance(v, dict):
            name = f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)
            text += ("\n" if text else "") + dump_toml(v, name)
    return text


def write_config(
    workdir: Path,
    data_dir: Path,
    sources: tuple[str, ...],
    memory_limit: str | None,
    threads: int | None,
) -> Path:
    """crm.toml for the generated data: the bundled sample's mapping, with source globs
    pointing at ``data_dir`` and the warehouse, serving database, exports and report
    inside ``workdir``."""
    config = tomllib.loads(SAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["warehouse"]["path"] = str(workdir / "warehouse" / "crm.duckdb")
    config["warehouse"]["serving_path"] = str(workdir / "serving" / "crm.duckdb")
    config.setdefault("exports", {})["path"] = str(workdir / "exports")
    config.setdefault("report", {})["path"] = str(workdir / "reports")
    if memory_limit:
        config["warehouse"]["memory_limit"] = memory_limit
    if threads:
        config["warehouse"]["threads"] = threads
    for source in config["sources"].values():
        source["path"] = str(data_dir / source["path"])
    for name in list(config["sources"]):
        if name not in sources:
            del config["sources"][name]
    path = workdir / "crm.toml"
    path.write_text(
        "# Written by benchmarks/run.py from data/sample/crm.toml.\n" + dump_toml(config),
        encoding="utf-8",
    )
    return path


# --- instrumentation ----------------------------------------------------------------------


class SqlTimer:
    """Wraps ``pipelines.sqlrun.run_sql`` wherever a pipeline module imported it, so the
    time of every SQL file is recorded (and, with ``profile_dir``, DuckDB's operator
    profile of each file is written as JSON). The wrapper adds a perf_counter call."""

    def __init__(
        self,
        profile_dir: Path | None = None,
        bench_ref: Callable[[], Bench | None] = lambda: None,
    ):
        self.records: list[dict] = []
        self.stage = ""
        self.profile_dir = profile_dir
        self.bench_ref = bench_ref
        self._original = sqlrun.run_sql
        self._patched: list[Any] = []

    def install(self) -> None:
        original = self._original

        def timed_run_sql(con, name, params=None):
            if self.profile_dir is not None:
                out = self.profile_dir / f"{self.stage}--{name.replace('/', '.')}.json"
                con.execute("pragma enable_profiling = 'json'")
                con.execute(f"pragma profiling_output = '{out}'")
            bench = self.bench_ref()
            parent = bench.current_substep if bench is not None else None
            t0, c0 = time.perf_counter(), cpu_seconds()
            try:
                return original(con, name, params)
            finally:
                self.records.append(
                    {
                        "stage": self.stage,
                        "sql": name,
                        "parent": parent,
                        "wall_s": time.perf_counter() - t0,
                        "cpu_s": cpu_seconds() - c0,
                    }
                )
                if self.profile_dir is not None:
                    con.execute("pragma disable_profiling")

        for mod_name, module in list(sys.modules.items()):
            if (
                mod_name == "pipelines" or mod_name.startswith(("pipelines.", "models."))
            ) and getattr(module, "run_sql", None) is original:
                module.run_sql = timed_run_sql
                self._patched.append(module)

    def uninstall(self) -> None:
        for module in self._patched:
            module.run_sql = self._original


# Python functions inside a step worth timing on their own, as "module:function" or
# "module:Class.method". A function is wrapped where the calling module looks it up (the
# module that imported it by name, or uses it as ``module.function``); a method on its
# class, wherever it is called from. Calls nest: a substep records its parent. A name that
# no longer exists is reported on stderr and skipped.
TRACED_FUNCTIONS = (
    "pipelines.load.ingest:file_sha256",
    "pipelines.load.ingest:_ingest_file",
    "pipelines.load.clean:write_fx_rates",
    "pipelines.load.clean:normalise_phones",
    "pipelines.load.quality:validate_source",
    "pipelines.load.quality:_apply_failures",
    "pipelines.core.build:resolve_identities",
    "pipelines.core.identity:cluster_pairs",
    # value: RFM, summary, fits, predictions, holdout check
    "models.rfm:score_rfm",
    "pipelines.scoring.value:_summary_resolution",
    "pipelines.scoring.value:_fit_and_predict",
    "models.clv:BetaGeoModel.fit",
    "models.clv:GammaGammaModel.fit",
    "models.clv:predict_customer_value",
    "pipelines.scoring.value:plan_clv_interval",
    "pipelines.scoring.value:interval_for_customers",
    "pipelines.scoring.value:_write_predictions",
    "pipelines.scoring.value:_holdout_check",
    "models.clv:evaluate_holdout",
    "pipelines.scoring.value:_next_order_backtest",
    "models.clv:predict_next_order_offsets",
    "models.clv:score_next_order",
    # churn
    "pipelines.scoring.churn:build_churn_features",
    "pipelines.scoring.churn:_build_labelled",
    "pipelines.scoring.churn:ChurnModel.fit",
    "pipelines.scoring.churn:compute_permutation_importances",
    "pipelines.scoring.churn:save_churn_model",
    # segments, marts, publish
    "models.segments:segment_customers",
    "pipelines.marts:build_customer_360",
    "pipelines.marts:build_history_table",
    "pipelines.marts:comment_marts",
    "pipelines.publish.exports:build_export_lists",
    "pipelines.publish.exports:_write_directory",
    "pipelines.publish.serving:_copy_schema",
    "pipelines.publish.report:collect_report_context",
    "pipelines.publish.report:render_report",
)


class FunctionTimer:
    """Records the wall and CPU time of each call of :data:`TRACED_FUNCTIONS` as a
    substep of the running stage."""

    def __init__(self, bench_ref: Callable[[], Bench | None]):
        self._bench_ref = bench_ref
        self._patched: list[tuple[Any, str, Any]] = []
        self.missing: list[str] = []

    def install(self) -> None:
        for spec in TRACED_FUNCTIONS:
            mod_name, qualname = spec.split(":")
            owner: Any = sys.modules.get(mod_name)
            *path, attr = qualname.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            # the class's own attribute, not an inherited one (it would be patched for all)
            original = (
                (
                    owner.__dict__.get(attr)
                    if isinstance(owner, type)
                    else getattr(owner, attr, None)
                )
                if owner is not None
                else None
            )
            if original is None or not callable(original):
                self.missing.append(spec)
                continue

            def wrapper(*args, _orig=original, _name=qualname, **kwargs):
                bench = self._bench_ref()
                if bench is None:
                    return _orig(*args, **kwargs)
                with bench.substep(_name):
                    return _orig(*args, **kwargs)

            functools.update_wrapper(wrapper, original)
            setattr(owner, attr, wrapper)
            self._patched.append((owner, attr, original))
        if self.missing:
            print(
                "note: traced functions not found (renamed?), not timed: "
                + ", ".join(self.missing),
                file=sys.stderr,
            )

    def uninstall(self) -> None:
        for owner, attr, original in reversed(self._patched):
            setattr(owner, attr, original)


def machine_info() -> dict:
    meminfo = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            meminfo[key] = int(value.split()[0]) * 1024
    cpu_model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    versions = runlog.package_versions(PACKAGES)
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_bytes": meminfo.get("MemTotal"),
        "ram_available_bytes_at_start": meminfo.get("MemAvailable"),
        "loadavg_at_start": list(os.getloadavg()),
        "versions": versions,
    }


def git_info() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "pipelines", "sql", "flows.py", "models")
    # Others edit the tree while benchmarks run: a digest of the code actually measured
    # tells two results files apart even when HEAD is the same.
    digest = hashlib.sha256()
    for path in sorted(
        [
            *ROOT.glob("pipelines/*.py"),
            *ROOT.glob("models/*.py"),
            *ROOT.glob("sql/**/*.sql"),
            ROOT / "flows.py",
        ]
    ):
        with contextlib.suppress(OSError):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return {
        "commit": git("rev-parse", "HEAD"),
        "pipeline_code_dirty": bool(dirty),
        "code_sha256": digest.hexdigest()[:16],
    }


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


# --- the run ------------------------------------------------------------------------------


def run_stage(
    b: Bench, st: Stage, sampler: Sampler, sql_timer: SqlTimer, profile_dir: Path | None
) -> dict:
    sql_timer.stage = st.name
    b.substeps = []
    rss_before = current_rss()
    hwm_reset = reset_peak_rss()
    sampler.reset()
    profiler = cProfile.Profile() if profile_dir is not None else None
    rusage0 = resource.getrusage(resource.RUSAGE_SELF)
    io0 = process_io()
    busy0 = machine_busy_seconds()
    t0, c0 = time.perf_counter(), cpu_seconds()
    error = None
    result = None
    try:
        if profiler is not None:
            profiler.enable()
        try:
            result = st.run(b)
        finally:
            if profiler is not None:
                profiler.disable()
    except Exception as exc:  # recorded, then the run stops
        error = f"{type(exc).__name__}: {exc}"
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    others = max(0.0, machine_busy_seconds() - busy0 - cpu)
    rusage1 = resource.getrusage(resource.RUSAGE_SELF)
    io1 = process_io()
    hwm = peak_rss()
    sampled = max(sampler.max_rss, current_rss())
    duckdb_mem = None
    with contextlib.suppress(duckdb.Error):
        duckdb_mem = b.con.execute(
            "select sum(memory_usage_bytes)::bigint, "
            "sum(temporary_storage_bytes)::bigint "
            "from duckdb_memory()"
        ).fetchall()[0]
    record = {
        "stage": st.name,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_per_wall": round(cpu / wall, 2) if wall else None,
        # cores' worth of CPU that other processes used during the stage (host noise)
        "other_processes_cores": round(others / wall, 2) if wall else None,
        "rows_in": result.rows_in if result else None,
        "rows_out": result.rows_out if result else None,
        "rows_per_s": round(result.rows_in / wall) if result and wall else None,
        "rss_before_bytes": rss_before,
        "peak_rss_bytes": hwm if hwm_reset else None,
        "peak_rss_sampled_bytes": sampled,
        "rss_after_bytes": current_rss(),
        "duckdb_memory_after_bytes": duckdb_mem[0] if duckdb_mem else None,
        "duckdb_temp_storage_after_bytes": duckdb_mem[1] if duckdb_mem else None,
        "spill_dir_peak_bytes": sampler.max_spill,
        "major_page_faults": rusage1.ru_majflt - rusage0.ru_majflt,
        "disk_read_bytes": io1["read_bytes"] - io0["read_bytes"],
        "disk_write_bytes": io1["write_bytes"] - io0["write_bytes"],
        "substeps": [
            {**s, "wall_s": round(s["wall_s"], 3), "cpu_s": round(s["cpu_s"], 3)}
            for s in b.substeps
        ],
        "sql": [
            {
                "sql": r["sql"],
                "parent": r["parent"],
                "wall_s": round(r["wall_s"], 3),
                "cpu_s": round(r["cpu_s"], 3),
            }
            for r in sql_timer.records
            if r["stage"] == st.name
        ],
        "detail": result.detail if result else {},
        "error": error,
    }
    if profiler is not None:
        prof_path = profile_dir / f"{st.name}.prof"
        profiler.dump_stats(prof_path)
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(25)
        (profile_dir / f"{st.name}.txt").write_text(buf.getvalue())
        record["profile"] = str(prof_path.relative_to(ROOT))
    return record


def _substep_tree(substeps: list[dict], parent: str | None = None, depth: int = 0) -> str:
    """Substeps as text: siblings of one name summed (with a count), children in [...]."""
    if depth > 4:
        return ""
    groups: dict[str, dict] = {}
    for x in substeps:
        if x.get("parent") == parent and x.get("depth", 0) == depth:
            g = groups.setdefault(x["name"], {"wall_s": 0.0, "n": 0})
            g["wall_s"] += x["wall_s"]
            g["n"] += 1
    parts = []
    for name, g in groups.items():
        text = f"{name} {g['wall_s']:.2f}s" + (f" x{g['n']}" if g["n"] > 1 else "")
        inner = _substep_tree(substeps, name, depth + 1)
        parts.append(text + (f" [{inner}]" if inner else ""))
    return ", ".join(parts)


def _sources_note(result: dict) -> str:
    # older results files have only the events flag
    sources = result.get("sources") or (
        ALL_SOURCES if result["events"] else ("transactions", "customers")
    )
    missing = [s for s in ALL_SOURCES if s not in sources]
    return f", no {' or '.join(missing)}" if missing else ""


def print_table(result: dict) -> None:
    head = (
        f"{'stage':<10} {'wall s':>8} {'cpu s':>8} {'peak RSS':>10} {'sampled':>10} "
        f"{'rows in':>12} {'rows out':>12} {'rows/s':>11} {'others':>7}"
    )
    print()
    source = (
        f", from warehouse {result['from_warehouse']['path']}"
        if result.get("from_warehouse")
        else ""
    )
    print(
        f"size {result['size']} ({result['customers']:,} customers"
        f"{_sources_note(result)}), seed {result['seed']}, "
        f"{result['machine']['cores']} cores{source}"
    )
    if result["stages"]:
        print(head)
        print("-" * len(head))

    def num(v):
        return "-" if v is None else f"{v:,}"

    for s in result["stages"]:
        line = (
            f"{s['stage']:<10} {s['wall_s']:>8.2f} {s['cpu_s']:>8.2f} "
            f"{fmt_bytes(s['peak_rss_bytes']):>10} "
            f"{fmt_bytes(s['peak_rss_sampled_bytes']):>10} {num(s['rows_in']):>12} "
            f"{num(s['rows_out']):>12} {num(s['rows_per_s']):>11} "
            f"{s['other_processes_cores'] or 0:>7.2f}"
        )
        print(line + (f"  FAILED: {s['error']}" if s["error"] else ""))
    tot = result["totals"]
    if result["stages"]:
        print("-" * len(head))
        print(
            f"{'total':<10} {tot['wall_s']:>8.2f} {tot['cpu_s']:>8.2f} "
            f"{fmt_bytes(tot['peak_rss_bytes']):>10}"
        )
    if result.get("setup"):
        copied = result["setup"].get("copy_warehouse_s")
        print(
            f"setup (warehouse, run log, GX context) {result['setup']['wall_s']:.2f} s, "
            f"module imports {result['setup'].get('imports_s', 0):.2f} s"
            + (f" + warehouse copy {copied:.1f} s" if copied is not None else "")
            + f"; process peak RSS {fmt_bytes(result['process_peak_rss_bytes'])}"
        )
    slow = sorted((r for s in result["stages"] for r in s["sql"]), key=lambda r: -r["wall_s"])
    if slow:
        print("slowest SQL files: " + ", ".join(f"{r['sql']} {r['wall_s']:.2f}s" for r in slow[:5]))
    subs = [(s["stage"], _substep_tree(s["substeps"])) for s in result["stages"] if s["substeps"]]
    if subs:
        print("substeps (wall):")
        for name, text in subs:
            print(f"  {name}: {text}")
    t = result.get("target")
    if t and t["applies"]:
        print(
            f"target ({'+'.join(t['stages'])} <= {t['max_seconds']:.0f} s and "
            f"<= {fmt_bytes(t['max_peak_bytes'])}): {t['wall_s']:.1f} s, "
            f"{fmt_bytes(t['peak_rss_bytes'])} -> {'MET' if t['met'] else 'NOT MET'}"
        )
    busy = [s["stage"] for s in result["stages"] if (s["other_processes_cores"] or 0) > 0.3]
    if busy:
        print(
            f"note: other processes used CPU during {', '.join(busy)} (column 'others', in "
            "cores): wall times there are inflated; compare cpu s."
        )
    if result.get("notebook"):
        print_comparison(result)
    if result.get("results_file"):
        print(f"results: {result['results_file']}")


# --- the notebook baseline ----------------------------------------------------------------

# The notebook's steps (benchmarks/notebook.py) and what of ours does the same job. The
# README explains the mapping; ``comparison_parts`` computes it from a run's records.
SHARED_STAGES = ("read", "prepare", "prepare/tx", "summary", "fits", "predictions", "rfm", "write")
# informational rows, left out of the 'shared' sums (prepare/tx is a part of prepare)
NOT_SUMMED = ("prepare/tx",)
OURS_FOR_SHARED = {
    "read": "ingest: ingest_source[transactions]",
    "prepare": "clean + validate + core (all sources)",
    "prepare/tx": "prepare's transaction parts: sql staging/transactions, "
    "validate_source[transactions], sql core/transaction_lines + transactions",
    "summary": "value: sql models/clv_summary + _summary_resolution (time-of-day count)",
    "fits": "value: BetaGeoModel.fit + GammaGammaModel.fit",
    "predictions": "value: predict_customer_value + _write_predictions",
    "rfm": "value: sql models/rfm + score_rfm",
    "write": "export",
}


def comparison_parts(stages: list[dict]) -> dict[str, dict | None]:
    """Our wall and CPU seconds for each of :data:`SHARED_STAGES` (None where the run has
    no such part: a stage not run, failed, or a function renamed)."""
    by = {r["stage"]: r for r in stages if not r["error"]}

    def total(items: list[dict]) -> dict | None:
        if not items:
            return None
        return {
            "wall_s": round(sum(x["wall_s"] for x in items), 3),
            "cpu_s": round(sum(x["cpu_s"] for x in items), 3),
        }

    def subs(stage: str, *names: str, parent: str | None = "*") -> list[dict]:
        rec = by.get(stage)
        return [
            x
            for x in (rec["substeps"] if rec else [])
            if x["name"] in names and (parent == "*" or x.get("parent") == parent)
        ]

    def sql(stage: str, name: str, parent: str | None = None) -> list[dict]:
        rec = by.get(stage)
        return [
            x
            for x in (rec["sql"] if rec else [])
            if x["sql"] == name and (parent == "*" or x.get("parent") == parent)
        ]

    def all_of(*parts: list[dict]) -> list[dict]:
        return [x for part in parts for x in part] if all(parts) else []

    def stages_of(*names: str) -> list[dict]:
        return [by[n] for n in names] if all(n in by for n in names) else []

    return {
        "read": total(subs("ingest", "ingest_source[transactions]", parent=None)),
        "prepare": total(stages_of("clean", "validate", "core")),
        "prepare/tx": total(
            all_of(
                sql("clean", "staging/transactions", "*"),
                subs("validate", "validate_source[transactions]"),
                sql("core", "core/transaction_lines", "*"),
                sql("core", "core/transactions", "*"),
            )
        ),
        "summary": total(
            all_of(
                sql("value", "models/clv_summary"),
                subs("value", "_summary_resolution", parent=None),
            )
        ),
        "fits": total(
            all_of(
                subs("value", "BetaGeoModel.fit", parent="_fit_and_predict"),
                subs("value", "GammaGammaModel.fit", parent="_fit_and_predict"),
            )
        ),
        "predictions": total(
            all_of(
                subs("value", "predict_customer_value", parent="_fit_and_predict"),
                subs("value", "_write_predictions", parent=None),
            )
        ),
        "rfm": total(all_of(sql("value", "models/rfm"), subs("value", "score_rfm", parent=None))),
        "write": total(stages_of("export")),
    }


def build_comparison(result: dict) -> dict:
    nb = result["notebook"]
    nb_by = {r["stage"]: r for r in nb.get("stages", [])}
    ours = comparison_parts(result["stages"])

    def ratio(a, b):
        return round(a / b, 2) if a is not None and b else None

    # Our export writes only consented, reachable contacts; without a customers source that
    # is nobody, and timing the writing of empty files against the notebook's full CSV
    # would be no comparison.
    export = next((r for r in result["stages"] if r["stage"] == "export" and not r["error"]), None)
    nb_write = nb_by.get("write")
    if export is not None and export["rows_out"] == 0 and nb_write and nb_write.get("rows_out"):
        ours["write"] = None
    not_comparable = (
        {
            "write": "ours wrote no list rows (no customers source: no consented "
            "contacts), the notebook all customers"
        }
        if export is not None and ours.get("write") is None
        else {}
    )

    rows = []
    for name in SHARED_STAGES:
        o, n = ours.get(name), nb_by.get(name.split("/")[0])
        n_ok = n is not None and not n.get("skipped")
        rows.append(
            {
                "not_comparable": not_comparable.get(name),
                "stage": name,
                "ours": OURS_FOR_SHARED[name],
                "ours_wall_s": o["wall_s"] if o else None,
                "ours_cpu_s": o["cpu_s"] if o else None,
                "notebook_wall_s": n["wall_s"] if n_ok else None,
                "notebook_cpu_s": n["cpu_s"] if n_ok else None,
                "notebook_error": n.get("error") if n else "not run",
                "wall_ratio_notebook_over_ours": ratio(
                    n["wall_s"] if n_ok else None, o["wall_s"] if o else None
                ),
                "cpu_ratio_notebook_over_ours": ratio(
                    n["cpu_s"] if n_ok else None, o["cpu_s"] if o else None
                ),
            }
        )
    both = [
        r
        for r in rows
        if r["ours_wall_s"] is not None
        and r["notebook_wall_s"] is not None
        and r["stage"] not in NOT_SUMMED
    ]
    shared = {
        "ours_wall_s": round(sum(r["ours_wall_s"] for r in both), 3),
        "ours_cpu_s": round(sum(r["ours_cpu_s"] for r in both), 3),
        "notebook_wall_s": round(sum(r["notebook_wall_s"] for r in both), 3),
        "notebook_cpu_s": round(sum(r["notebook_cpu_s"] for r in both), 3),
        "stages": [r["stage"] for r in both],
    }
    return {
        "ratio": "notebook / ours (above 1: the pipeline is faster)",
        "rows": rows,
        "shared_total": shared,
        "totals": {
            "ours_wall_s": result["totals"]["wall_s"],
            "ours_cpu_s": result["totals"]["cpu_s"],
            "notebook_wall_s": nb.get("totals", {}).get("wall_s"),
            "notebook_cpu_s": nb.get("totals", {}).get("cpu_s"),
            "ours_peak_rss_bytes": result["totals"]["peak_rss_bytes"],
            "notebook_peak_rss_bytes": nb.get("totals", {}).get("peak_rss_bytes"),
            "ours_setup_s": round(
                (result.get("setup") or {}).get("wall_s", 0)
                + (result.get("setup") or {}).get("imports_s", 0),
                3,
            )
            if result.get("setup")
            else None,
            "notebook_setup_s": (nb.get("setup") or {}).get("wall_s"),
            "ours_process_peak_rss_bytes": result.get("process_peak_rss_bytes"),
            "notebook_process_peak_rss_bytes": nb.get("process_peak_rss_bytes"),
        },
    }


def print_comparison(result: dict) -> None:
    nb = result["notebook"]
    print()
    if nb.get("status") == "crashed" or "stages" not in nb:
        print(f"notebook baseline: did not run to the end ({nb.get('error')})")
        return
    cmp = result["comparison"]
    print(
        f"notebook baseline (benchmarks/notebook.py, pandas + lifetimes, as of {nb['as_of']})"
        " vs the pipeline; ratio = notebook / ours (above 1: ours is faster)"
    )

    def f(v, spec=">8.2f"):
        width = spec[1:].split(".")[0]
        return f"{'-':>{width}}" if v is None else format(v, spec)

    def r(v):
        return "-" if v is None else f"{v:.2f}x"

    head = (
        f"{'stage':<12} {'ours s':>8} {'nb s':>8} {'ratio':>7} {'ours cpu':>9} "
        f"{'nb cpu':>8} {'ratio':>7}  ours ="
    )
    print(head)
    print("-" * len(head))
    for row in cmp["rows"]:
        err = row["notebook_error"]
        print(
            f"{row['stage']:<12} {f(row['ours_wall_s'])} {f(row['notebook_wall_s'])} "
            f"{r(row['wall_ratio_notebook_over_ours']):>7} {f(row['ours_cpu_s'], '>9.2f')} "
            f"{f(row['notebook_cpu_s'])} {r(row['cpu_ratio_notebook_over_ours']):>7}  "
            f"{row['ours']}"
            + (f"  NOTEBOOK: {err}" if err else "")
            + (f"  NOT COMPARED: {row['not_comparable']}" if row.get("not_comparable") else "")
        )
    print("-" * len(head))
    sh, tot = cmp["shared_total"], cmp["totals"]

    def ratio(a, b):
        return r(round(a / b, 2) if a is not None and b else None)

    print(
        f"{'shared':<12} {f(sh['ours_wall_s'])} {f(sh['notebook_wall_s'])} "
        f"{ratio(sh['notebook_wall_s'], sh['ours_wall_s']):>7} {f(sh['ours_cpu_s'], '>9.2f')} "
        f"{f(sh['notebook_cpu_s'])} {ratio(sh['notebook_cpu_s'], sh['ours_cpu_s']):>7}  "
        "the rows above where both have a figure (prepare/tx not added)"
    )
    lacking = [row["stage"] for row in cmp["rows"] if row["ours_wall_s"] is None]
    print(
        f"{'all stages':<12} {f(tot['ours_wall_s'])} {f(tot['notebook_wall_s'])} "
        f"{ratio(tot['notebook_wall_s'], tot['ours_wall_s']):>7} "
        f"{f(tot['ours_cpu_s'], '>9.2f')} {f(tot['notebook_cpu_s'])} "
        f"{ratio(tot['notebook_cpu_s'], tot['ours_cpu_s']):>7}  "
        + (f"NOT like for like: ours has no {', '.join(lacking)} in this run; " if lacking else "")
        + "ours also: holdout check, churn, segments, marts, serving, report "
        "(those run)"
    )
    print(
        f"{'setup':<12} {f(tot['ours_setup_s'])} {f(tot['notebook_setup_s'])}"
        f"{'':>36}imports (ours: + GX context, warehouse, run log)"
    )
    print(
        f"peak RSS: ours {fmt_bytes(tot['ours_peak_rss_bytes'])} (process "
        f"{fmt_bytes(tot['ours_process_peak_rss_bytes'])}), notebook "
        f"{fmt_bytes(tot['notebook_peak_rss_bytes'])} (process "
        f"{fmt_bytes(tot['notebook_process_peak_rss_bytes'])})"
    )
    busy = [s["stage"] for s in nb["stages"] if (s.get("other_processes_cores") or 0) > 0.3]
    if busy:
        print(
            f"note: other processes used CPU during the notebook's {', '.join(busy)}: "
            "compare cpu s."
        )


def notebook_transactions_file(settings, con: duckdb.DuckDBPyConnection | None) -> Path | None:
    """The one transactions CSV the notebook reads: the file the warehouse ingested (when
    given one) or the config's transactions glob. None when it is not one CSV file."""
    paths: list[str] = []
    if con is not None:
        with contextlib.suppress(duckdb.Error):
            paths = [
                r[0]
                for r in con.execute(
                    "select distinct file_path from raw.files where source = 'transactions' "
                    "order by 1"
                ).fetchall()
            ]
    if not paths:
        source = settings.sources.get("transactions")
        import glob

        paths = sorted(glob.glob(source.path)) if source else []
    if len(paths) != 1 or not paths[0].lower().endswith(".csv") or not Path(paths[0]).exists():
        return None
    return Path(paths[0])


def run_notebook(settings, transactions: Path, as_of, workdir: Path) -> dict:
    """Run benchmarks/notebook.py in a subprocess with the config's currency rates, horizons
    and discount rate, and return the figures it wrote (or why it did not)."""
    m = settings.models
    out = workdir / "notebook.json"
    cmd = [
        sys.executable,
        str(NOTEBOOK),
        "--transactions",
        str(transactions),
        "--out-dir",
        str(workdir / "notebook"),
        "--json",
        str(out),
        "--base-currency",
        settings.currency.base,
        "--rates",
        json.dumps(dict(settings.currency.rates)),
        "--horizons",
        ",".join(str(h) for h in m.expected_purchase_horizons_days),
        # lifetimes' customer_lifetime_value counts months of 30 days
        "--clv-months",
        str(max(1, round(m.clv_horizon_days / 30))),
        "--annual-discount-rate",
        str(m.annual_discount_rate),
    ]
    if as_of is not None:
        cmd += ["--as-of", str(as_of)]
    print("[notebook] " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT)
    wall = round(time.perf_counter() - t0, 3)
    if proc.returncode != 0 or not out.exists():
        return {
            "status": "crashed",
            "returncode": proc.returncode,
            "process_wall_s": wall,
            "error": f"notebook.py exited with {proc.returncode}",
            "command": cmd,
        }
    nb = json.loads(out.read_text())
    nb["process_wall_s"] = wall
    nb["command"] = [str(c) for c in cmd]
    return nb


def copy_warehouse(src: Path, dest: Path) -> float:
    """Copy a warehouse (and its WAL, if any) to ``dest``; returns the seconds it took."""
    t0 = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    wal = src.with_name(src.name + ".wal")
    if wal.exists():
        shutil.copyfile(wal, dest.with_name(dest.name + ".wal"))
    return round(time.perf_counter() - t0, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="S",
        help="S = 10k, M = 100k, L = 1M customers (default S)",
    )
    parser.add_argument(
        "--stages",
        default=None,
        help="comma-separated stages to run (default: all: "
        + ",".join(s.name for s in STAGES)
        + "); prerequisites are added",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"generator seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--no-events",
        action="store_true",
        help="leave the events source out (transactions + customers only); "
        "short for --sources transactions,customers",
    )
    parser.add_argument(
        "--sources",
        default=None,
        help="comma-separated sources to load (default: "
        + ",".join(ALL_SOURCES)
        + "); transactions is required",
    )
    parser.add_argument(
        "--from-warehouse",
        type=Path,
        default=None,
        metavar="PATH",
        help="start from a copy of this warehouse, whose core tables are "
        "built (skips " + ", ".join(CORE_STAGES) + "; as-of = its "
        "latest completed order); pass the --size its data came from",
    )
    parser.add_argument(
        "--no-notebook",
        action="store_true",
        help="skip the notebook baseline (benchmarks/notebook.py)",
    )
    parser.add_argument(
        "--notebook-only",
        action="store_true",
        help="run only the notebook baseline on the size's transactions",
    )
    parser.add_argument(
        "--memory-limit",
        default=None,
        help="override warehouse.memory_limit (default: the sample's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="override warehouse.threads (default: DuckDB's, = cores)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile each stage (slower; .prof/.txt files beside the JSON)",
    )
    parser.add_argument(
        "--duckdb-profile",
        action="store_true",
        help="DuckDB JSON profile of every SQL file (beside the JSON)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="parent of the per-run temp dir (default: the system temp dir)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the run's temp dir (warehouse, crm.toml) for inspection",
    )
    parser.add_argument(
        "--runner",
        choices=("local", "dask"),
        default="local",
        help="[execution] runner: dask runs the per-customer SQL per bucket on a LocalCluster",
    )
    parser.add_argument("--workers", type=int, default=2, help="[execution] workers (dask)")
    parser.add_argument("--buckets", type=int, default=16, help="[execution] buckets (dask)")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    args = parser.parse_args(argv)
    if args.notebook_only and (args.no_notebook or args.from_warehouse or args.stages):
        parser.error(
            "--notebook-only runs no stage of ours: leave out --no-notebook, "
            "--from-warehouse and --stages"
        )
    sources = ALL_SOURCES
    if args.sources:
        wanted = {s.strip() for s in args.sources.split(",") if s.strip()}
        if not wanted <= set(ALL_SOURCES) or "transactions" not in wanted:
            parser.error(
                f"--sources {args.sources}: choose from {', '.join(ALL_SOURCES)}, "
                "transactions included"
            )
        sources = tuple(s for s in ALL_SOURCES if s in wanted)
    if args.no_events:
        sources = tuple(s for s in sources if s != "events")
    source_wh = None
    if args.from_warehouse:
        source_wh = args.from_warehouse.expanduser().resolve()
        if not source_wh.is_file():
            parser.error(f"--from-warehouse {args.from_warehouse}: no such file")

    if args.notebook_only:
        stages, added = [], []
    else:
        stages, added = resolve_stages(
            args.stages.split(",") if args.stages else None, done=CORE_STAGES if source_wh else ()
        )
    customers = SIZES[args.size]
    machine = machine_info()
    code = git_info()
    data = ensure_data(args.size, customers, args.seed)
    data_dir = DATA_DIR / args.size
    used_files = {name: f for name, f in data["files"].items() if f["source"] in sources}

    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    profile_dir = None
    if args.profile or args.duckdb_profile:
        profile_dir = RESULTS_DIR / f"{args.size}-{stamp}-profile"
        profile_dir.mkdir(parents=True, exist_ok=True)
    if args.workdir:
        # absolute: the config in the temp dir resolves relative paths against itself
        args.workdir = args.workdir.expanduser().resolve()
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"crm-bench-{args.size}-", dir=args.workdir))
    config_path = write_config(workdir, data_dir, sources, args.memory_limit, args.threads)
    if args.runner == "dask":
        with config_path.open("a", encoding="utf-8") as f:
            f.write(
                f'\n[execution]\nrunner = "dask"\nworkers = {args.workers}\n'
                f"buckets = {args.buckets}\n"
            )

    bench: Bench | None = None
    sql_timer = SqlTimer(profile_dir if args.duckdb_profile else None, lambda: bench)
    records: list[dict] = []
    status = "succeeded"
    sampler = None
    func_timer = None
    setup: dict[str, Any] = {}
    from_warehouse = None
    dask_figures = None
    notebook = None
    warehouse_bytes = None
    settings = load_settings(config_path)
    try:
        as_of = None
        tx_file = None
        if stages:
            if source_wh is not None:
                copied = copy_warehouse(source_wh, settings.warehouse.path)
            # Setup: settings, the warehouse, the run log, and GX's import and context,
            # which cost seconds once per process whatever the data size. Timed on their
            # own so the validate figures scale with the data.
            t0 = time.perf_counter()
            con = connect_warehouse(settings)
            started = datetime.now(UTC).replace(tzinfo=None)
            ctx = steps.RunContext(
                settings=settings, con=con, run_id=runlog.new_run_id(started), started_at=started
            )
            runlog.record_run_start(con, settings, ctx.run_id, started, None)
            gx_warm = getattr(quality, "_gx", None)
            if gx_warm is not None and any(st.name == "validate" for st in stages):
                gx_warm()
            if settings.execution.runner == "dask":
                # Prefect's temporary server, a fixed cost per process, timed apart
                from prefect.client.orchestration import get_client

                t_prefect = time.perf_counter()
                with get_client(sync_client=True) as prefect_client:
                    prefect_client.api_healthcheck()
                prefect_server_s = round(time.perf_counter() - t_prefect, 3)
            setup = {
                "wall_s": round(time.perf_counter() - t0, 3),
                "rss_bytes": current_rss(),
                "imports_s": round(IMPORT_SECONDS, 3),
            }
            if settings.execution.runner == "dask":
                setup["prefect_server_s"] = prefect_server_s
            if source_wh is not None:
                setup["copy_warehouse_s"] = copied
                present = [
                    t for t in ("core.transactions", "core.customers") if Bench(ctx=ctx).count(t)
                ]
                if "core.transactions" not in present:
                    raise SystemExit(
                        f"--from-warehouse {source_wh}: core.transactions is "
                        "missing or empty; build the core tables first"
                    )
                # as the flow's core task does
                ctx = dataclasses.replace(ctx, as_of=runlog.resolve_as_of(con, None))
                t_buckets = time.perf_counter()
                execution.write_core_buckets(con, settings, ctx.run_id)
                setup["write_buckets_s"] = round(time.perf_counter() - t_buckets, 3)
                from_warehouse = {
                    "path": str(source_wh),
                    "bytes": source_wh.stat().st_size,
                    "copy_s": copied,
                    "as_of": str(ctx.as_of),
                    "skipped_stages": list(CORE_STAGES),
                    "files": [
                        dict(zip(("source", "file_path", "rows_read", "size_bytes"), r))
                        for r in con.execute(
                            "select source, file_path, rows_read, size_bytes "
                            "from raw.files order by 1, 2"
                        ).fetchall()
                    ],
                    "core_rows": {
                        t: Bench(ctx=ctx).count(t)
                        for t in ("core.transactions", "core.customers", "core.events")
                    },
                }
                ingested = {Path(f["file_path"]).resolve() for f in from_warehouse["files"]}
                expected = {(data_dir / n).resolve() for n in used_files}
                if ingested and ingested != expected:
                    from_warehouse["note"] = (
                        f"the warehouse ingested other files than benchmarks/data/{args.size}"
                    )
                    print(
                        f"note: {from_warehouse['note']}: {sorted(map(str, ingested))}",
                        file=sys.stderr,
                    )
            sql_timer.install()
            func_timer = FunctionTimer(lambda: bench)
            func_timer.install()
            spill = (
                settings.warehouse.temp_directory or settings.warehouse.path.parent / "duckdb_tmp"
            )
            sampler = Sampler(spill)
            sampler.start()
            bench = Bench(ctx=ctx)
            for st in stages:
                print(f"[{args.size}] {st.name} ...", file=sys.stderr, flush=True)
                rec = run_stage(
                    bench, st, sampler, sql_timer, profile_dir if args.profile else None
                )
                records.append(rec)
                print(
                    f"[{args.size}] {st.name}: {rec['wall_s']:.2f} s, peak "
                    f"{fmt_bytes(rec['peak_rss_bytes'])}",
                    file=sys.stderr,
                    flush=True,
                )
                if rec["error"]:
                    status = "failed"
                    break
            sampler.stop()
            sampler = None
            sql_timer.uninstall()
            func_timer.uninstall()
            ctx = bench.ctx  # with the as-of date the core stage decided
            bench = None
            runlog.record_run_end(
                con,
                ctx.run_id,
                status,
                ctx.as_of,
                {r["stage"]: {"rows_in": r["rows_in"], "rows_out": r["rows_out"]} for r in records},
            )
            as_of = ctx.as_of
            tx_file = notebook_transactions_file(settings, con)
            con.close()
            warehouse_bytes = settings.warehouse.path.stat().st_size
        else:
            tx_file = notebook_transactions_file(settings, None)
        if not args.no_notebook:
            if tx_file is None:
                notebook = {
                    "status": "crashed",
                    "error": "the transactions source is not "
                    "one CSV file, which the notebook baseline reads",
                }
            else:
                # as_of None (--notebook-only, or core failed): the notebook takes the
                # latest completed order, as the pipeline's default does
                notebook = run_notebook(settings, tx_file, as_of, workdir)
    finally:
        if args.runner == "dask":
            from pipelines.execution import runner as dask_runner

            dask_figures = {
                "workers": args.workers,
                "buckets": args.buckets,
                "stages": dask_runner.STAGE_TIMES.stages,
                "worker_peak_rss_bytes": dask_runner.worker_peak_rss(),
            }
            dask_runner.close_cluster()
        if sampler is not None:
            sampler.stop()
        sql_timer.uninstall()
        if func_timer is not None:
            func_timer.uninstall()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    ok = [r for r in records if not r["error"]]
    peaks = [r["peak_rss_bytes"] or r["peak_rss_sampled_bytes"] for r in records]
    result: dict[str, Any] = {
        "schema": 2,
        "size": args.size,
        "customers": customers,
        "seed": args.seed,
        "events": "events" in sources,
        "sources": list(sources),
        "stages_requested": args.stages.split(",") if args.stages else "all",
        "stages_added_as_prerequisites": added,
        "status": status,
        "started_at": stamp,
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "git": code,
        "settings": {
            "memory_limit": settings.warehouse.memory_limit,
            "threads": settings.warehouse.threads or "default",
        },
        "data": {
            "dir": str(data_dir.relative_to(ROOT)),
            "reused": data["reused"],
            "generate_seconds": data.get("generate_seconds"),
            "files": used_files,
            "rows_total": sum(f["rows"] for f in used_files.values()),
            "bytes_total": sum(f["bytes"] for f in used_files.values()),
            "warehouse_bytes": warehouse_bytes,
        },
        "from_warehouse": from_warehouse,
        "runner": args.runner,
        "dask": dask_figures,
        "setup": setup,
        "stages": records,
        "totals": {
            "wall_s": round(sum(r["wall_s"] for r in records), 3),
            "cpu_s": round(sum(r["cpu_s"] for r in records), 3),
            "peak_rss_bytes": max(peaks) if peaks else None,
        },
        # clear_refs also resets ru_maxrss, so the process peak is the largest stage peak.
        "process_peak_rss_bytes": max([setup.get("rss_bytes") or 0, *[p for p in peaks if p]])
        or None,
        "profiled": bool(args.profile),
        "config": config_path.read_text() if args.keep else None,
        "workdir": str(workdir) if args.keep else None,
        "notebook": notebook,
    }
    if notebook and "stages" in notebook:
        result["comparison"] = build_comparison(result)
    target = [r for r in ok if r["stage"] in TARGET_STAGES]
    if {r["stage"] for r in target} == set(TARGET_STAGES):
        wall = sum(r["wall_s"] for r in target)
        peak = max(r["peak_rss_bytes"] or r["peak_rss_sampled_bytes"] for r in target)
        result["target"] = {
            "stages": list(TARGET_STAGES),
            "max_seconds": TARGET_SECONDS,
            "max_peak_bytes": TARGET_PEAK_BYTES,
            "wall_s": round(wall, 3),
            "peak_rss_bytes": peak,
            "met": wall <= TARGET_SECONDS and peak <= TARGET_PEAK_BYTES,
            # the issue's target: ~10M transaction rows (L), no events
            "applies": args.size == "L" and "events" not in sources,
        }
    if not args.no_save:
        suffix = (
            SOURCE_SUFFIXES.get(sources, "-" + "+".join(sources))
            + ("-fromwh" if source_wh else "")
            + ("-notebook" if args.notebook_only else "")
        )
        out = RESULTS_DIR / f"{args.size}{suffix}-{stamp}.json"
        result["results_file"] = str(out.relative_to(ROOT))
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    nb_failed = notebook is not None and notebook.get("status") == "crashed"
    return 0 if status == "succeeded" and not nb_failed else 1


if __name__ == "__main__":
    sys.exit(main())
