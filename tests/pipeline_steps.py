"""The flow's steps without Prefect, for tests: Prefect's temporary test server costs
about 20 s per process, so the determinism and kill tests run ``pipelines.steps.STEPS``
(the list ``flows.crm_pipeline`` wraps in tasks) through :func:`run_pipeline`.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

from pipelines.steps import STEPS, run_steps  # noqa: E402


def run_pipeline(
    config: str | Path, as_of: date | None, steps=tuple(STEPS), *, write_report: bool = True
) -> str:
    """Run ``steps`` (default: all) of one run like ``flows.crm_pipeline``; returns the
    run id. The run is logged in audit.runs as succeeded, or failed with the error.

    ``write_report=False`` leaves out the HTML report (3 s a run): it is written last and
    only reads the working database, so it changes no other output."""
    return run_steps(str(config), as_of, steps, write_report=write_report).ctx.run_id


# --- test data ----------------------------------------------------------------------------

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "data" / "sample" / "crm.toml"


def write_sample_deliveries(
    directory: Path, *, customers: int, seed: int, start: date, end: date, as_of: date
) -> Path:
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
    generate_sample(generated, customers=customers, seed=seed, start=start, end=end, progress=False)
    later = directory / "later"
    later.mkdir(parents=True)
    with open(generated / "transactions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    column = header.index("InvoiceDate")  # "%Y-%m-%d %H:%M:%S", UTC (see crm.toml)
    for path, keep in (
        (directory / "transactions_1.csv", lambda d: d <= as_of),
        (later / "transactions_2.csv", lambda d: d > as_of),
    ):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(
                r for r in body if keep(datetime.strptime(r[column], "%Y-%m-%d %H:%M:%S").date())
            )
    lines = (generated / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)

    def event_date(line: str) -> date:
        stamp = datetime.fromisoformat(json.loads(line)["timestamp"].replace("Z", "+00:00"))
        return stamp.astimezone(UTC).date()

    (directory / "events_1.jsonl").write_text(
        "".join(x for x in lines if event_date(x) <= as_of), encoding="utf-8"
    )
    (later / "events_2.jsonl").write_text(
        "".join(x for x in lines if event_date(x) > as_of), encoding="utf-8"
    )
    shutil.copy(generated / "customers.csv", directory / "customers.csv")
    shutil.rmtree(generated)
    text = SAMPLE_CONFIG.read_text(encoding="utf-8")
    for old, new in (
        ('"../warehouse/crm.duckdb"', '"wh/crm.duckdb"'),
        ('"../serving/crm.duckdb"', '"serving/crm.duckdb"'),
        ('"../../exports"', '"exports"'),
        ('"../../reports"', '"reports"'),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config = directory / "crm.toml"
    config.write_text(text, encoding="utf-8")
    return config
