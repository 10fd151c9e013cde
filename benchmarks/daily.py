"""Benchmark daily runs: a first load of the history, then one run per delivered day.

    .venv/bin/python benchmarks/daily.py --size S --days 3
    .venv/bin/python benchmarks/daily.py --size M --days 10 --check-equivalence

The data of the size is generated and cached by run.py's ``ensure_data``
(``benchmarks/data/<size>/``) and split by
:func:`pipelines.sample.deliveries.split_daily_deliveries` into the history (everything
before the last ``--days`` days of the generated period) and one delivery per day. In
``benchmarks/work/daily-<size>/`` (git-ignored, replaced by each call) the history is
copied into the run folder's ``incoming/`` and the whole pipeline runs as of the day
before the first day (the first load); then, per day, that day's files are copied in and
the pipeline runs as of that day. Every run goes through ``pipelines.steps.open_run`` and
:data:`pipelines.steps.STEPS`, as ``run_steps`` does, so that each step is timed on its
own. ``--check-equivalence`` then runs a full refresh (a fresh warehouse, every delivery
in its ``incoming/``, one run as of the last day) and compares what both published with
:func:`pipelines.sample.compare.compare_published`.

Per run: wall and CPU seconds, peak RSS (VmHWM reset before every step, and a 50 ms
sampler over the whole run: ``ru_maxrss`` never goes down, so it cannot tell runs of one
process apart), per-step wall, CPU and peak, the files the ingest step loaded. Results go
to ``benchmarks/results/daily-<size>-<timestamp>.json``; a table of first load vs day
1..N per step is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

# run.py sets the environment defaults, puts the repository on sys.path and imports the
# pipeline's step modules (timed as IMPORT_SECONDS), so the first load pays no imports.
import run as bench  # noqa: E402
from probes import (  # noqa: E402
    Sampler,
    cpu_seconds,
    current_rss,
    machine_busy_seconds,
    peak_rss,
    reset_peak_rss,
)

from pipelines import steps  # noqa: E402
from pipelines.config import load_settings  # noqa: E402
from pipelines.load import quality  # noqa: E402
from pipelines.sample.compare import compare_published  # noqa: E402
from pipelines.sample.deliveries import (  # noqa: E402
    INCOMING_DIR,
    Delivery,
    copy_delivery,
    split_daily_deliveries,
    write_deliveries_config,
)

WORK_DIR = BENCH_DIR / "work"


def timed_run(config: Path, as_of: date, label: str, sampler: Sampler) -> dict[str, Any]:
    """Run every step of the pipeline once as of ``as_of``, as ``steps.run_steps`` does,
    timing each step. Returns the run's figures (seconds, bytes); a failed step is
    recorded in ``error`` and ends the run."""
    rss_before = current_rss()
    sampler.reset()
    busy0 = machine_busy_seconds()
    t0, c0 = time.perf_counter(), cpu_seconds()
    records: dict[str, dict[str, Any]] = {}
    run = None
    error = None
    try:
        with steps.open_run(config, as_of, write_report=True) as run:
            for name, step in steps.STEPS.items():
                hwm_reset = reset_peak_rss()
                s0, sc0 = time.perf_counter(), cpu_seconds()
                try:
                    run.record(step(run.ctx))
                finally:
                    records[name] = {
                        "wall_s": round(time.perf_counter() - s0, 3),
                        "cpu_s": round(cpu_seconds() - sc0, 3),
                        "peak_rss_bytes": peak_rss() if hwm_reset else None,
                    }
    except Exception as exc:  # recorded; the benchmark stops after this run
        error = f"{type(exc).__name__}: {exc}"
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    others = max(0.0, machine_busy_seconds() - busy0 - cpu)
    sampled = max(sampler.max_rss, current_rss())
    peaks = [r["peak_rss_bytes"] for r in records.values() if r["peak_rss_bytes"]]
    files = run.reports["ingest"].result if run is not None and "ingest" in run.reports else []
    return {
        "label": label,
        "as_of": as_of.isoformat(),
        "run_id": run.ctx.run_id if run is not None else None,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_per_wall": round(cpu / wall, 2) if wall else None,
        # cores' worth of CPU that other processes used meanwhile (a noisy host)
        "other_processes_cores": round(others / wall, 2) if wall else None,
        "peak_rss_bytes": max([sampled, *peaks]),
        "peak_rss_sampled_bytes": sampled,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": current_rss(),
        # opening the warehouse, logging the run's start and end, closing
        "outside_steps_s": round(wall - sum(r["wall_s"] for r in records.values()), 3),
        "steps": records,
        "ingest": {
            "files_loaded": sum(f.status == "loaded" for f in files),
            "files_skipped": sum(f.status != "loaded" for f in files),
            "rows_read": sum(f.rows_read for f in files),
            "statuses": {f.path.rsplit("/", 1)[-1]: f.status for f in files},
        },
        "error": error,
    }


def _copy_in(deliveries: list[Delivery], incoming: Path) -> float:
    t0 = time.perf_counter()
    for delivery in deliveries:
        copy_delivery(delivery, incoming)
    return round(time.perf_counter() - t0, 3)


def _print_run(record: dict) -> None:
    print(
        f"[{record['label']}] as of {record['as_of']}: {record['wall_s']:.1f} s wall, "
        f"{record['cpu_s']:.1f} s CPU, peak {bench.fmt_bytes(record['peak_rss_bytes'])}"
        + (f"  FAILED: {record['error']}" if record["error"] else ""),
        file=sys.stderr,
        flush=True,
    )


def print_table(result: dict) -> None:
    """First load, day 1..N (and the full refresh) side by side, per step (wall s)."""
    runs = [result["first_load"], *result["daily"]]
    if result.get("full_refresh"):
        runs.append(result["full_refresh"])
    names = ["first" if r is result["first_load"] else r["label"] for r in runs]
    width = max(9, *(len(n) + 1 for n in names))

    def line(label: str, values: list[str]) -> str:
        return f"{label:<16}" + "".join(f"{v:>{width}}" for v in values)

    print()
    print(
        f"daily mode, size {result['size']} ({result['customers']:,} customers), "
        f"{result['days']} days, {result['machine']['cores']} cores"
    )
    head = line("step (wall s)", names)
    print(head)
    print(line("as of", [r["as_of"][5:] for r in runs]))
    print("-" * len(head))
    for step in result["step_names"]:
        print(
            line(
                step,
                [f"{r['steps'][step]['wall_s']:.2f}" if step in r["steps"] else "-" for r in runs],
            )
        )
    print("-" * len(head))
    print(line("total wall s", [f"{r['wall_s']:.2f}" for r in runs]))
    print(line("total cpu s", [f"{r['cpu_s']:.2f}" for r in runs]))
    print(line("peak RSS", [bench.fmt_bytes(r["peak_rss_bytes"]) for r in runs]))
    print(line("others (cores)", [f"{r['other_processes_cores'] or 0:.2f}" for r in runs]))
    print(line("files loaded", [str(r["ingest"]["files_loaded"]) for r in runs]))
    print(line("rows read", [f"{r['ingest']['rows_read']:,}" for r in runs]))
    sizes = result["deliveries"]
    print(
        "deliveries (rows): history "
        + ", ".join(f"{k} {v:,}" for k, v in sizes[0]["rows"].items())
        + "; per day "
        + ", ".join(
            f"{s} {min(d['rows'][s] for d in sizes[1:]):,}-{max(d['rows'][s] for d in sizes[1:]):,}"
            for s in sizes[0]["rows"]
        )
    )
    eq = result.get("equivalence")
    if eq:
        if eq["equal"]:
            print("equivalence: daily runs and the full refresh published the same")
        else:
            print(f"equivalence: {len(eq['differences'])} differences:")
            for diff in eq["differences"]:
                print(f"  {diff[:400]}")
    for r in runs:
        if r["error"]:
            print(f"{r['label']} FAILED: {r['error']}")
    busy = [r["label"] for r in runs if (r["other_processes_cores"] or 0) > 0.3]
    if busy:
        print(
            f"note: other processes used CPU during {', '.join(busy)}: wall times there "
            "are inflated; compare cpu s."
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(bench.SIZES), default="S")
    parser.add_argument(
        "--days", type=int, default=10, help="daily deliveries: the last DAYS days (default 10)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=bench.DEFAULT_SEED,
        help=f"generator seed (default {bench.DEFAULT_SEED})",
    )
    parser.add_argument(
        "--check-equivalence",
        action="store_true",
        help="after the last day, run a full refresh and compare what both published",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")

    customers = bench.SIZES[args.size]
    machine = bench.machine_info()
    code = bench.git_info()
    data = bench.ensure_data(args.size, customers, args.seed)
    data_dir = bench.DATA_DIR / args.size
    period = json.loads((data_dir / "truth" / "params.json").read_text(encoding="utf-8"))
    start, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
    first_day = end - timedelta(days=args.days - 1)
    if first_day <= start:
        parser.error(f"--days {args.days}: the generated period {start}..{end} is not longer")

    stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
    work = WORK_DIR / f"daily-{args.size}"
    if work.exists():
        shutil.rmtree(work)
    print(f"[{args.size}] splitting {data_dir} into {work} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    split = split_daily_deliveries(data_dir, work / "deliveries", first_day, args.days)
    split_s = round(time.perf_counter() - t0, 3)

    # GX's import and context cost seconds once per process: paid here, not in the first
    # load's validate step (run.py does the same in its setup).
    t0 = time.perf_counter()
    gx_warm = getattr(quality, "_gx", None)
    if gx_warm is not None:
        gx_warm()
    setup = {
        "imports_s": round(bench.IMPORT_SECONDS, 3),
        "gx_context_s": round(time.perf_counter() - t0, 3),
        "rss_bytes": current_rss(),
    }

    daily_dir = work / "daily"
    config = write_deliveries_config(daily_dir)
    incoming = daily_dir / INCOMING_DIR
    wh = load_settings(config).warehouse
    spill = wh.temp_directory or wh.path.parent / "duckdb_tmp"  # DuckDB's default, as run.py
    sampler = Sampler(spill)
    sampler.start()
    runs: list[dict] = []
    full_refresh = None
    equivalence = None
    try:
        copied = _copy_in([split.history], incoming)
        first = timed_run(config, first_day - timedelta(days=1), "first load", sampler)
        first["copy_s"] = copied
        _print_run(first)
        if not first["error"]:
            for i, delivery in enumerate(split.days, start=1):
                copied = _copy_in([delivery], incoming)
                record = timed_run(config, delivery.day, f"day {i}", sampler)
                record["copy_s"] = copied
                runs.append(record)
                _print_run(record)
                if record["error"]:
                    break
        failed = first["error"] or any(r["error"] for r in runs)
        if args.check_equivalence and not failed:
            refresh_dir = work / "refresh"
            refresh_config = write_deliveries_config(refresh_dir)
            copied = _copy_in(list(split.deliveries), refresh_dir / INCOMING_DIR)
            full_refresh = timed_run(refresh_config, split.days[-1].day, "refresh", sampler)
            full_refresh["copy_s"] = copied
            _print_run(full_refresh)
            if not full_refresh["error"]:
                t0 = time.perf_counter()
                differences = compare_published(config, refresh_config)
                equivalence = {
                    "equal": not differences,
                    "differences": differences,
                    "compare_s": round(time.perf_counter() - t0, 3),
                }
    finally:
        sampler.stop()

    all_runs = [first, *runs, *([full_refresh] if full_refresh else [])]
    status = "failed" if any(r["error"] for r in all_runs) else "succeeded"
    if equivalence is not None and not equivalence["equal"]:
        status = "not equivalent"
    result: dict[str, Any] = {
        "schema": 1,
        "mode": "daily",
        "size": args.size,
        "customers": customers,
        "seed": args.seed,
        "days": args.days,
        "status": status,
        "started_at": stamp,
        "machine": {**machine, "loadavg_at_end": list(os.getloadavg())},
        "git": code,
        "data": {
            "dir": str(data_dir.relative_to(bench.ROOT)),
            "reused": data["reused"],
            "generate_seconds": data.get("generate_seconds"),
            "files": data["files"],
            "period": {"start": start.isoformat(), "end": end.isoformat()},
        },
        "split": {
            "seconds": split_s,
            "first_day": first_day.isoformat(),
            "last_day": end.isoformat(),
            "left_out": split.left_out,
        },
        "deliveries": [
            {"day": d.day.isoformat() if d.day else "history", "rows": d.rows}
            for d in split.deliveries
        ],
        "setup": setup,
        "step_names": list(steps.STEPS),
        "first_load": first,
        "daily": runs,
        "full_refresh": full_refresh,
        "equivalence": equivalence,
        "workdir": str(work.relative_to(bench.ROOT)),
    }
    if not args.no_save:
        bench.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = bench.RESULTS_DIR / f"daily-{args.size}-{stamp}.json"
        result["results_file"] = str(out.relative_to(bench.ROOT))
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    if not args.no_save:
        print(f"results: {result['results_file']}")
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
