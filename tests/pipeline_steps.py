"""The flow's steps as plain calls, for tests that must not start Prefect.

``flows.crm_pipeline`` runs these steps as Prefect tasks; Prefect's temporary test server
costs about 20 s per process, so the determinism and kill tests call the plain functions
in the same order instead (``test_the_steps_here_follow_flows_py`` keeps the two lists
in step). Modules are imported inside each step: a child process that runs only the
last steps then skips the 10+ s that Great Expectations, lifetimes and scikit-learn take
to import.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _ingest(ctx) -> None:
    from pipelines import erasure, ingest

    for source in ctx.settings.sources.values():
        ingest.ingest_source(ctx.con, source, ctx.run_id, ctx.started_at)
    erasure.apply_tombstones(ctx.con, ctx.run_id)


def _clean(ctx) -> None:
    from pipelines import clean

    clean.build_staging(ctx.con, ctx.settings)


def _validate(ctx) -> None:
    from pipelines import clean, quality

    for name in clean.STAGING_ORDER:
        quality.validate_source(ctx.con, name, ctx.settings, ctx.run_id)
    quality.check_batch_limits(ctx.con, ctx.settings, ctx.run_id)


def _core(ctx) -> None:
    from pipelines import core, runlog

    core.build_core(ctx.con, ctx.run_id)
    ctx.as_of = runlog.resolve_as_of(ctx.con, ctx.requested_as_of)


def _value(ctx) -> None:
    from pipelines import value

    value.score_customer_value(ctx.con, ctx.settings, ctx.as_of, ctx.run_id)


def _churn(ctx) -> None:
    from pipelines import churn, value

    churn.score_churn_risk(ctx.con, ctx.settings, ctx.as_of, ctx.run_id,
                           value.make_bgnbd_scorer(ctx.con, ctx.settings, ctx.as_of))


def _segments(ctx) -> None:
    from pipelines import value

    value.segment_customers(ctx.con, ctx.settings, ctx.as_of)


def _marts(ctx) -> None:
    from pipelines import marts

    marts.build_marts(ctx.con, ctx.as_of, ctx.run_id)


def _publish(ctx) -> None:
    from pipelines import exports, publish

    exports.write_exports(ctx.con, ctx.settings, ctx.as_of, ctx.run_id)
    publish.publish_serving_database(ctx.con, ctx.settings, ctx.run_id)
    if not ctx.write_report:
        return
    from pipelines import report  # matplotlib: 3 s of imports a killed child never needs

    report.write_report(ctx.con, publish.report_path(ctx.settings, ctx.as_of),
                        run_id=ctx.run_id, as_of=ctx.as_of,
                        currency=ctx.settings.currency.base)


# The order of flows.crm_pipeline; the names are its tasks' names.
STEPS: dict[str, Callable] = {
    "ingest": _ingest, "clean": _clean, "validate": _validate, "core": _core,
    "customer value": _value, "churn": _churn, "segments": _segments, "marts": _marts,
    "publish": _publish,
}


def run_pipeline(config: str | Path, as_of: date | None, steps=tuple(STEPS), *,
                 write_report: bool = True) -> str:
    """Run ``steps`` (default: all) of one run like ``flows.crm_pipeline``; returns the
    run id. The run is logged in audit.runs as succeeded, or failed with the error.

    ``write_report=False`` leaves out the HTML report (3 s a run): it is written last and
    only reads the working database, so it changes no other output."""
    from pipelines import runlog
    from pipelines.config import load_settings
    from pipelines.warehouse import connect_warehouse

    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown steps {sorted(unknown)}; known: {list(STEPS)}")
    settings = load_settings(str(config))
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    ctx = runlog.RunContext(settings=settings, con=connect_warehouse(settings),
                            run_id=runlog.new_run_id(started), started_at=started,
                            requested_as_of=as_of, as_of=as_of)
    ctx.write_report = write_report
    runlog.record_run_start(ctx)
    try:
        for name, step in STEPS.items():
            if name in steps:
                step(ctx)
        runlog.record_run_end(ctx, "succeeded")
        return ctx.run_id
    except Exception as exc:
        runlog.record_run_end(ctx, "failed", str(exc))
        raise
    finally:
        ctx.con.close()


# --- test data ----------------------------------------------------------------------------

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "data" / "sample" / "crm.toml"


def write_sample_deliveries(directory: Path, *, customers: int, seed: int, start: date,
                            end: date, as_of: date) -> Path:
    """Generated exports split into what was delivered up to ``as_of`` and after it.

    ``directory`` gets ``transactions_1.csv`` and ``events_1.jsonl`` (rows dated on or
    before ``as_of``, UTC), ``customers.csv`` (the whole customer master) and
    ``crm.toml`` (the bundled sample's config, everything inside ``directory``);
    ``directory/later/`` gets ``transactions_2.csv`` and ``events_2.jsonl``, the rows
    dated after ``as_of``: the next day's delivery. Returns the config path.
    """
    import csv
    import json
    import shutil

    from pipelines.sample import generate_sample

    generated = directory / "generated"
    generate_sample(generated, customers=customers, seed=seed, start=start, end=end,
                    progress=False)
    later = directory / "later"
    later.mkdir(parents=True)
    with open(generated / "transactions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    column = header.index("InvoiceDate")  # "%Y-%m-%d %H:%M:%S", UTC (see crm.toml)
    for path, keep in ((directory / "transactions_1.csv", lambda d: d <= as_of),
                       (later / "transactions_2.csv", lambda d: d > as_of)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(r for r in body
                             if keep(datetime.strptime(r[column], "%Y-%m-%d %H:%M:%S").date()))
    lines = (generated / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)

    def event_date(line: str) -> date:
        stamp = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
        return stamp.astimezone(timezone.utc).date()

    (directory / "events_1.jsonl").write_text(
        "".join(x for x in lines if event_date(x) <= as_of), encoding="utf-8")
    (later / "events_2.jsonl").write_text(
        "".join(x for x in lines if event_date(x) > as_of), encoding="utf-8")
    shutil.copy(generated / "customers.csv", directory / "customers.csv")
    shutil.rmtree(generated)
    text = SAMPLE_CONFIG.read_text(encoding="utf-8")
    for old, new in (('"../warehouse/crm.duckdb"', '"wh/crm.duckdb"'),
                     ('"../serving/crm.duckdb"', '"serving/crm.duckdb"'),
                     ('"../../exports"', '"exports"'), ('"../../reports"', '"reports"')):
        assert old in text, old
        text = text.replace(old, new)
    config = directory / "crm.toml"
    config.write_text(text, encoding="utf-8")
    return config
