"""Benchmark the pipeline's steps: wall time, CPU time, peak memory and rows per second.

    .venv/bin/python benchmarks/run.py --size S            # 10k customers
    .venv/bin/python benchmarks/run.py --size L --no-events
    .venv/bin/python benchmarks/run.py --size M --stages ingest,clean --profile

The steps are the plain functions that ``flows.py`` calls, imported and called in the
flow's order; nothing of theirs is copied here. Each step runs once, in this process,
against a fresh warehouse in a temporary directory. Synthetic exports are generated once
per size and seed into ``benchmarks/data/<size>/`` and reused. Results go to
``benchmarks/results/<size>-<timestamp>.json`` and a table is printed.

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
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from pipelines import clean, core, ingest, quality, runlog, sqlrun  # noqa: E402
from pipelines.config import load_settings  # noqa: E402
from pipelines.warehouse import connect_warehouse  # noqa: E402

BENCH_DIR = ROOT / "benchmarks"
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
SAMPLE_CONFIG = ROOT / "data" / "sample" / "crm.toml"

SIZES = {"S": 10_000, "M": 100_000, "L": 1_000_000}
DEFAULT_SEED = 42

# Issue target: ingest + validate + clean + dedupe of ~10M transaction rows from CSV.
TARGET_STAGES = ("ingest", "clean", "validate", "core")
TARGET_SECONDS = 60.0
TARGET_PEAK_BYTES = 6 * 1024**3

PACKAGES = ("duckdb", "polars", "pyarrow", "pandas", "numpy", "great-expectations",
            "phonenumbers", "prefect", "lifetimes", "scikit-learn")

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- memory probes ------------------------------------------------------------------------

def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def current_rss() -> int:
    """Resident set size of this process, in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE_SIZE


def peak_rss() -> int:
    """High-water mark of RSS since start or since the last :func:`reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False when the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def process_io() -> dict[str, int]:
    """Bytes this process read from and wrote to storage (page cache misses, spills)."""
    out = {"read_bytes": 0, "write_bytes": 0}
    with contextlib.suppress(OSError), open("/proc/self/io") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            if key in out:
                out[key] = int(value)
    return out


CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine spent busy (from /proc/stat), so that a
    stage can report how much CPU other processes took while it ran (a noisy host)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def dir_bytes(path: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size if entry.is_file() \
                    else dir_bytes(Path(entry.path)) if entry.is_dir() else 0
    except OSError:
        pass
    return total


class Sampler(threading.Thread):
    """Samples RSS (and DuckDB's spill directory) every ``interval`` seconds; the
    maxima are reset per stage by :meth:`reset`."""

    def __init__(self, spill_dir: Path | None, interval: float = 0.05):
        super().__init__(daemon=True, name="rss-sampler")
        self.interval = interval
        self.spill_dir = spill_dir
        self.max_rss = 0
        self.max_spill = 0
        self.samples = 0
        self._halt = threading.Event()

    def reset(self) -> None:
        self.max_rss = current_rss()
        self.max_spill = 0
        self.samples = 0

    def run(self) -> None:
        tick = 0
        while not self._halt.wait(self.interval):
            self.max_rss = max(self.max_rss, current_rss())
            self.samples += 1
            tick += 1
            # The spill directory is walked every 4th tick (200 ms): it can hold many files.
            if self.spill_dir is not None and tick % 4 == 0:
                self.max_spill = max(self.max_spill, dir_bytes(self.spill_dir))

    def stop(self) -> None:
        self._halt.set()
        self.join()


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
    run: Callable[["Bench"], StageResult]
    requires: tuple[str, ...]
    doc: str


STAGES: list[Stage] = []


def stage(name: str, requires: tuple[str, ...] = ()):
    """Register a stage; stages run in registration order (the flow's order)."""
    def register(fn: Callable[["Bench"], StageResult]) -> Callable[["Bench"], StageResult]:
        unknown = set(requires) - {s.name for s in STAGES}
        if unknown:
            raise ValueError(f"stage {name!r} requires unregistered stages {sorted(unknown)}")
        STAGES.append(Stage(name, fn, tuple(requires), (fn.__doc__ or "").strip()))
        return fn
    return register


@dataclass
class Bench:
    """What every stage shares: the flow's own :class:`runlog.RunContext` (settings, the
    open warehouse, run id, as-of date once core has resolved it), so a stage can call a
    step exactly as ``flows.py`` does, and a scratch dict (``state``) for anything else a
    later stage needs."""

    ctx: runlog.RunContext
    state: dict[str, Any] = field(default_factory=dict)
    substeps: list[dict] = field(default_factory=list)

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

    @contextlib.contextmanager
    def substep(self, name: str):
        """Time one part of a stage (one source, one function) within the stage."""
        t0, c0 = time.perf_counter(), _cpu_seconds()
        try:
            yield
        finally:
            self.substeps.append({"name": name, "wall_s": time.perf_counter() - t0,
                                  "cpu_s": _cpu_seconds() - c0})

    def count(self, table: str) -> int:
        exists = self.con.execute(
            "select count(*) from duckdb_tables() where schema_name || '.' || table_name = ?",
            [table]).fetchone()[0]
        return self.con.execute(f"select count(*) from {table}").fetchone()[0] if exists else 0


def _sources(b: Bench) -> list[str]:
    return list(b.settings.sources)


@stage("ingest")
def run_ingest(b: Bench) -> StageResult:
    """pipelines.ingest.ingest_source for every configured source (raw.*)."""
    reports = []
    for source in b.settings.sources.values():
        with b.substep(f"ingest_source[{source.name}]"):
            reports += ingest.ingest_source(b.con, source, b.run_id, b.started_at)
    b.state["file_reports"] = reports
    raw = {name: b.count(f"raw.{name}") for name in _sources(b)}
    return StageResult(
        rows_in=sum(r.rows_read for r in reports), rows_out=sum(raw.values()),
        detail={"files": [{"source": r.source, "file": Path(r.path).name, "status": r.status,
                           "reader": r.reader, "rows_read": r.rows_read,
                           "rows_rejected": r.rows_rejected} for r in reports],
                "raw_rows": raw})


@stage("clean", requires=("ingest",))
def run_clean(b: Bench) -> StageResult:
    """pipelines.clean.build_staging (staging.*, phones to E.164)."""
    raw = sum(b.count(f"raw.{name}") for name in clean.STAGING_ORDER)
    counts = clean.build_staging(b.con, b.settings)
    return StageResult(rows_in=raw, rows_out=sum(counts.values()),
                       detail={"staging_rows": counts})


@stage("validate", requires=("clean",))
def run_validate(b: Bench) -> StageResult:
    """pipelines.quality.validate_source per source + check_batch_limits (quarantine.*)."""
    reports = []
    for name in clean.STAGING_ORDER:
        with b.substep(f"validate_source[{name}]"):
            reports.append(quality.validate_source(b.con, name, b.settings, b.run_id))
    with b.substep("check_batch_limits"):
        quality.check_batch_limits(b.con, b.settings, b.run_id)
    checked = sum(r.rows_checked for r in reports)
    quarantined = sum(r.rows_quarantined for r in reports)
    return StageResult(
        rows_in=checked, rows_out=checked - quarantined,
        detail={"rows_quarantined": {r.source: r.rows_quarantined for r in reports},
                "fields_blanked": {r.source: r.fields_blanked for r in reports},
                "failures_by_rule": {r.source: r.failures_by_rule for r in reports
                                     if r.failures_by_rule}})


@stage("core", requires=("validate",))
def run_core(b: Bench) -> StageResult:
    """pipelines.core.build_core (identity resolution, dedupe, reconciliation) and the
    as-of date, as the flow's core task does."""
    valid = b.con.execute("""
        select (select count(*) from staging.transactions)
             + (select count(*) from staging.customers)
             + (select count(*) from staging.events)
             - (select count(*) from quarantine.transactions)
             - (select count(*) from quarantine.customers)
             - (select count(*) from quarantine.events)""").fetchone()[0]
    report = core.build_core(b.con, b.run_id)
    b.ctx.as_of = as_of = runlog.resolve_as_of(b.con, b.ctx.requested_as_of)
    kept = {t: b.count(f"core.{t}") for t in ("transaction_lines", "customer_records",
                                               "events")}
    unbalanced = b.con.execute("select count(*) from audit.file_reconciliation "
                               "where not is_balanced").fetchone()[0]
    return StageResult(
        rows_in=valid, rows_out=sum(kept.values()),
        detail={"kept_rows": kept, "orders": report.orders, "customers": report.customers,
                "events": report.events, "duplicates_by_source": report.duplicates_by_source,
                "identity": asdict(report.identity), "as_of": str(as_of),
                "files_unbalanced": unbalanced})


# Later stages (value, churn, segments, marts, export, report) go here, in the flow's
# order, calling the same functions as flows.py with b.ctx, e.g.
#
# @stage("value", requires=("core",))
# def run_value(b: Bench) -> StageResult:
#     """pipelines.value.score_customer_value (RFM, BG/NBD + Gamma-Gamma CLV)."""
#     report = value.score_customer_value(b.con, b.settings, b.ctx.as_of, b.run_id)
#     return StageResult(rows_in=b.count("core.transactions"), rows_out=report.customers)


def resolve_stages(names: list[str] | None) -> tuple[list[Stage], list[str]]:
    """Stages to run, in pipeline order, with every prerequisite added. Returns the
    stages and the names that were added because a requested stage needs them."""
    by_name = {s.name: s for s in STAGES}
    wanted = set(names or by_name)
    unknown = wanted - set(by_name)
    if unknown:
        raise SystemExit(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(by_name)}")
    added: list[str] = []
    todo = list(wanted)
    while todo:
        for req in by_name[todo.pop()].requires:
            if req not in wanted:
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
    from pipelines.generate import generate_sample

    print(f"generating {size} data ({customers:,} customers, seed {seed}) into {out} ...",
          file=sys.stderr)
    t0 = time.perf_counter()
    report = generate_sample(out, customers=customers, seed=seed, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - t0
    files = {}
    for role in ("transactions", "customers", "events"):
        path = Path(report.paths[role])
        files[path.name] = {"source": role, "rows": report.rows[role],
                            "bytes": path.stat().st_size}
    manifest = {"size": size, "customers": customers, "seed": seed,
                "generated_at": _now_iso(), "generate_seconds": round(seconds, 1),
                "files": files, "people": {"buyers": report.customers,
                                           "prospects": report.prospects,
                                           "duplicate_records": report.duplicate_records,
                                           "completed_orders": report.completed_orders}}
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
    scalars = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
               if not isinstance(v, dict)]
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


def write_config(workdir: Path, data_dir: Path, events: bool, memory_limit: str | None,
                 threads: int | None) -> Path:
    """crm.toml for the generated data: the bundled sample's mapping, with source globs
    pointing at ``data_dir`` and the warehouse inside ``workdir``."""
    config = tomllib.loads(SAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["warehouse"]["path"] = str(workdir / "warehouse" / "crm.duckdb")
    config["warehouse"]["serving_path"] = str(workdir / "serving" / "crm.duckdb")
    if memory_limit:
        config["warehouse"]["memory_limit"] = memory_limit
    if threads:
        config["warehouse"]["threads"] = threads
    for source in config["sources"].values():
        source["path"] = str(data_dir / source["path"])
    if not events:
        config["sources"].pop("events", None)
    path = workdir / "crm.toml"
    path.write_text("# Written by benchmarks/run.py from data/sample/crm.toml.\n"
                    + dump_toml(config), encoding="utf-8")
    return path


# --- instrumentation ----------------------------------------------------------------------

def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class SqlTimer:
    """Wraps ``pipelines.sqlrun.run_sql`` wherever a pipeline module imported it, so the
    time of every SQL file is recorded (and, with ``profile_dir``, DuckDB's operator
    profile of each file is written as JSON). The wrapper adds a perf_counter call."""

    def __init__(self, profile_dir: Path | None = None):
        self.records: list[dict] = []
        self.stage = ""
        self.profile_dir = profile_dir
        self._original = sqlrun.run_sql
        self._patched: list[Any] = []

    def install(self) -> None:
        original = self._original

        def timed_run_sql(con, name, params=None):
            if self.profile_dir is not None:
                out = self.profile_dir / f"{self.stage}--{name.replace('/', '.')}.json"
                con.execute("pragma enable_profiling = 'json'")
                con.execute(f"pragma profiling_output = '{out}'")
            t0 = time.perf_counter()
            try:
                return original(con, name, params)
            finally:
                self.records.append({"stage": self.stage, "sql": name,
                                     "wall_s": time.perf_counter() - t0})
                if self.profile_dir is not None:
                    con.execute("pragma disable_profiling")

        for mod_name, module in list(sys.modules.items()):
            if (mod_name == "pipelines" or mod_name.startswith(("pipelines.", "models."))) \
                    and getattr(module, "run_sql", None) is original:
                module.run_sql = timed_run_sql
                self._patched.append(module)

    def uninstall(self) -> None:
        for module in self._patched:
            module.run_sql = self._original


# Python functions inside a step worth timing on their own, as "module:function". Each is
# wrapped where the calling module looks it up; a name that no longer exists is skipped.
TRACED_FUNCTIONS = (
    "pipelines.ingest:file_sha256",
    "pipelines.ingest:_ingest_file",
    "pipelines.clean:write_fx_rates",
    "pipelines.clean:normalise_phones",
    "pipelines.quality:_apply_failures",
    "pipelines.core:resolve_identities",
    "pipelines.identity:cluster_pairs",
)


class FunctionTimer:
    """Records the wall time of each call of :data:`TRACED_FUNCTIONS` as a substep."""

    def __init__(self, bench_ref: Callable[[], "Bench | None"]):
        self._bench_ref = bench_ref
        self._patched: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for spec in TRACED_FUNCTIONS:
            mod_name, func_name = spec.split(":")
            module = sys.modules.get(mod_name)
            original = getattr(module, func_name, None) if module else None
            if original is None or not callable(original):
                continue

            def wrapper(*args, _orig=original, _spec=spec, **kwargs):
                bench = self._bench_ref()
                if bench is None:
                    return _orig(*args, **kwargs)
                with bench.substep(_spec.split(":")[1]):
                    return _orig(*args, **kwargs)

            setattr(module, func_name, wrapper)
            self._patched.append((module, func_name, original))

    def uninstall(self) -> None:
        for module, func_name, original in reversed(self._patched):
            setattr(module, func_name, original)


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
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return {"hostname": platform.node(), "platform": platform.platform(),
            "cpu_model": cpu_model, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)),
            "ram_bytes": meminfo.get("MemTotal"),
            "ram_available_bytes_at_start": meminfo.get("MemAvailable"),
            "loadavg_at_start": list(os.getloadavg()), "versions": versions}


def git_info() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = git("status", "--porcelain", "--", "pipelines", "sql", "flows.py", "models")
    # Others edit the tree while benchmarks run: a digest of the code actually measured
    # tells two results files apart even when HEAD is the same.
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("pipelines/*.py"), *ROOT.glob("models/*.py"),
                        *ROOT.glob("sql/**/*.sql"), ROOT / "flows.py"]):
        with contextlib.suppress(OSError):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return {"commit": git("rev-parse", "HEAD"), "pipeline_code_dirty": bool(dirty),
            "code_sha256": digest.hexdigest()[:16]}


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


# --- the run ------------------------------------------------------------------------------

def run_stage(b: Bench, st: Stage, sampler: Sampler, sql_timer: SqlTimer,
              profile_dir: Path | None) -> dict:
    sql_timer.stage = st.name
    b.substeps = []
    rss_before = current_rss()
    hwm_reset = reset_peak_rss()
    sampler.reset()
    profiler = cProfile.Profile() if profile_dir is not None else None
    rusage0 = resource.getrusage(resource.RUSAGE_SELF)
    io0 = process_io()
    busy0 = machine_busy_seconds()
    t0, c0 = time.perf_counter(), _cpu_seconds()
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
    cpu = _cpu_seconds() - c0
    others = max(0.0, machine_busy_seconds() - busy0 - cpu)
    rusage1 = resource.getrusage(resource.RUSAGE_SELF)
    io1 = process_io()
    hwm = peak_rss()
    sampled = max(sampler.max_rss, current_rss())
    duckdb_mem = None
    with contextlib.suppress(duckdb.Error):
        duckdb_mem = b.con.execute("select sum(memory_usage_bytes)::bigint, "
                                   "sum(temporary_storage_bytes)::bigint "
                                   "from duckdb_memory()").fetchone()
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
        "substeps": [{**s, "wall_s": round(s["wall_s"], 3), "cpu_s": round(s["cpu_s"], 3)}
                     for s in b.substeps],
        "sql": [{"sql": r["sql"], "wall_s": round(r["wall_s"], 3)}
                for r in sql_timer.records if r["stage"] == st.name],
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


def print_table(result: dict) -> None:
    head = (f"{'stage':<10} {'wall s':>8} {'cpu s':>8} {'peak RSS':>10} {'sampled':>10} "
            f"{'rows in':>12} {'rows out':>12} {'rows/s':>11} {'others':>7}")
    print()
    print(f"size {result['size']} ({result['customers']:,} customers"
          f"{', no events' if not result['events'] else ''}), seed {result['seed']}, "
          f"{result['machine']['cores']} cores")
    print(head)
    print("-" * len(head))
    num = lambda v: "-" if v is None else f"{v:,}"
    for s in result["stages"]:
        line = (f"{s['stage']:<10} {s['wall_s']:>8.2f} {s['cpu_s']:>8.2f} "
                f"{fmt_bytes(s['peak_rss_bytes']):>10} "
                f"{fmt_bytes(s['peak_rss_sampled_bytes']):>10} {num(s['rows_in']):>12} "
                f"{num(s['rows_out']):>12} {num(s['rows_per_s']):>11} "
                f"{s['other_processes_cores'] or 0:>7.2f}")
        print(line + (f"  FAILED: {s['error']}" if s["error"] else ""))
    tot = result["totals"]
    print("-" * len(head))
    print(f"{'total':<10} {tot['wall_s']:>8.2f} {tot['cpu_s']:>8.2f} "
          f"{fmt_bytes(tot['peak_rss_bytes']):>10}")
    print(f"setup (imports, GX context) {result['setup']['wall_s']:.2f} s; "
          f"process peak RSS {fmt_bytes(result['process_peak_rss_bytes'])}")
    slow = sorted((r for s in result["stages"] for r in s["sql"]), key=lambda r: -r["wall_s"])
    if slow:
        print("slowest SQL files: " + ", ".join(f"{r['sql']} {r['wall_s']:.2f}s"
                                               for r in slow[:5]))
    subs = [f"{x['name']} {x['wall_s']:.2f}s" for s in result["stages"] for x in s["substeps"]]
    if subs:
        print("substeps: " + ", ".join(subs))
    t = result.get("target")
    if t and t["applies"]:
        print(f"target ({'+'.join(t['stages'])} <= {t['max_seconds']:.0f} s and "
              f"<= {fmt_bytes(t['max_peak_bytes'])}): {t['wall_s']:.1f} s, "
              f"{fmt_bytes(t['peak_rss_bytes'])} -> {'MET' if t['met'] else 'NOT MET'}")
    busy = [s["stage"] for s in result["stages"] if (s["other_processes_cores"] or 0) > 0.3]
    if busy:
        print(f"note: other processes used CPU during {', '.join(busy)} (column 'others', in "
              "cores): wall times there are inflated; compare cpu s.")
    if result.get("results_file"):
        print(f"results: {result['results_file']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="S",
                        help="S = 10k, M = 100k, L = 1M customers (default S)")
    parser.add_argument("--stages", default=None,
                        help="comma-separated stages to run (default: all: "
                             + ",".join(s.name for s in STAGES)
                             + "); prerequisites are added")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"generator seed (default {DEFAULT_SEED})")
    parser.add_argument("--no-events", action="store_true",
                        help="leave the events source out (transactions + customers only)")
    parser.add_argument("--memory-limit", default=None,
                        help="override warehouse.memory_limit (default: the sample's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="override warehouse.threads (default: DuckDB's, = cores)")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile each stage (slower; .prof/.txt files beside the JSON)")
    parser.add_argument("--duckdb-profile", action="store_true",
                        help="DuckDB JSON profile of every SQL file (beside the JSON)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="parent of the per-run temp dir (default: the system temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's temp dir (warehouse, crm.toml) for inspection")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    args = parser.parse_args(argv)

    stages, added = resolve_stages(args.stages.split(",") if args.stages else None)
    customers = SIZES[args.size]
    machine = machine_info()
    code = git_info()
    data = ensure_data(args.size, customers, args.seed)
    data_dir = DATA_DIR / args.size
    used_files = {name: f for name, f in data["files"].items()
                  if not (args.no_events and f["source"] == "events")}

    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    profile_dir = None
    if args.profile or args.duckdb_profile:
        profile_dir = RESULTS_DIR / f"{args.size}-{stamp}-profile"
        profile_dir.mkdir(parents=True, exist_ok=True)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"crm-bench-{args.size}-", dir=args.workdir))
    config_path = write_config(workdir, data_dir, not args.no_events, args.memory_limit,
                               args.threads)

    sql_timer = SqlTimer(profile_dir if args.duckdb_profile else None)
    records: list[dict] = []
    status = "succeeded"
    sampler = None
    func_timer = None
    try:
        # Setup: settings, the warehouse, the run log, and GX's import and context, which
        # cost seconds once per process whatever the data size. Timed on their own so
        # the validate figures scale with the data.
        t0 = time.perf_counter()
        settings = load_settings(config_path)
        con = connect_warehouse(settings)
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        ctx = runlog.RunContext(settings=settings, con=con, run_id=runlog.new_run_id(started),
                                started_at=started)
        runlog.record_run_start(ctx)
        gx_warm = getattr(quality, "_gx", None)
        if gx_warm is not None:
            gx_warm()
        setup = {"wall_s": round(time.perf_counter() - t0, 3), "rss_bytes": current_rss()}
        sql_timer.install()
        bench: Bench | None = None
        func_timer = FunctionTimer(lambda: bench)
        func_timer.install()
        spill = settings.warehouse.temp_directory or settings.warehouse.path.parent / "duckdb_tmp"
        sampler = Sampler(spill)
        sampler.start()
        bench = Bench(ctx=ctx)
        for st in stages:
            print(f"[{args.size}] {st.name} ...", file=sys.stderr, flush=True)
            rec = run_stage(bench, st, sampler, sql_timer, profile_dir if args.profile else None)
            records.append(rec)
            print(f"[{args.size}] {st.name}: {rec['wall_s']:.2f} s, peak "
                  f"{fmt_bytes(rec['peak_rss_bytes'])}", file=sys.stderr, flush=True)
            if rec["error"]:
                status = "failed"
                break
        ctx.rows_per_step = {r["stage"]: {"rows_in": r["rows_in"], "rows_out": r["rows_out"]}
                             for r in records}
        runlog.record_run_end(ctx, status)
        con.close()
        warehouse_bytes = settings.warehouse.path.stat().st_size
    finally:
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
        "schema": 1,
        "size": args.size, "customers": customers, "seed": args.seed,
        "events": not args.no_events,
        "stages_requested": args.stages.split(",") if args.stages else "all",
        "stages_added_as_prerequisites": added,
        "status": status,
        "started_at": stamp,
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "git": code,
        "settings": {"memory_limit": settings.warehouse.memory_limit,
                     "threads": settings.warehouse.threads or "default"},
        "data": {"dir": str(data_dir.relative_to(ROOT)), "reused": data["reused"],
                 "generate_seconds": data.get("generate_seconds"),
                 "files": used_files,
                 "rows_total": sum(f["rows"] for f in used_files.values()),
                 "bytes_total": sum(f["bytes"] for f in used_files.values()),
                 "warehouse_bytes": warehouse_bytes},
        "setup": setup,
        "stages": records,
        "totals": {"wall_s": round(sum(r["wall_s"] for r in records), 3),
                   "cpu_s": round(sum(r["cpu_s"] for r in records), 3),
                   "peak_rss_bytes": max(peaks) if peaks else None},
        # clear_refs also resets ru_maxrss, so the process peak is the largest stage peak.
        "process_peak_rss_bytes": max([setup["rss_bytes"], *[p for p in peaks if p]]),
        "profiled": bool(args.profile),
        "config": config_path.read_text() if args.keep else None,
        "workdir": str(workdir) if args.keep else None,
    }
    target = [r for r in ok if r["stage"] in TARGET_STAGES]
    if {r["stage"] for r in target} == set(TARGET_STAGES):
        wall = sum(r["wall_s"] for r in target)
        peak = max(r["peak_rss_bytes"] or r["peak_rss_sampled_bytes"] for r in target)
        result["target"] = {"stages": list(TARGET_STAGES), "max_seconds": TARGET_SECONDS,
                            "max_peak_bytes": TARGET_PEAK_BYTES, "wall_s": round(wall, 3),
                            "peak_rss_bytes": peak,
                            "met": wall <= TARGET_SECONDS and peak <= TARGET_PEAK_BYTES,
                            # the target: ~10M transaction rows (L), no events
                            "applies": args.size == "L" and args.no_events}
    if not args.no_save:
        suffix = "" if not args.no_events else "-noevents"
        out = RESULTS_DIR / f"{args.size}{suffix}-{stamp}.json"
        result["results_file"] = str(out.relative_to(ROOT))
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
