"""The run's HTML report: one self-contained file that opens offline.

Reads one run's rows (``run_id``) of the published tables ``marts.data_quality``,
``marts.segment_summary``, ``marts.kpi_monthly``, ``marts.model_parameters`` and
``marts.model_metrics`` (contract: docs/marts.md; the ``is_fitted`` rows of model_metrics
say why a model was skipped), plus ``models.churn_importances`` and the stale sources of
``audit.source_freshness`` (a warning at the top). A table or rows that are
absent make their section say why in one sentence; they are never an error.

The charts (inline matplotlib SVG) are drawn in :mod:`pipelines.publish.charts`; numbers and names
are written by :mod:`pipelines.publish.formatting`. This module is the entry point: it
collects the context, renders the template and writes the file; the rows are read in
:mod:`pipelines.publish.report_data` and each section is built in
:mod:`pipelines.publish.report_sections` (data and customers) or
:mod:`pipelines.publish.report_model_sections` (churn, BG/NBD).
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from pipelines.assets import asset_dir
from pipelines.config import Settings
from pipelines.files import (
    fsync_file,
    make_dirs,
    remove_stale_temp_files,
    temp_path_for,
    write_text_atomically,
)
from pipelines.publish.formatting import (
    format_count,
    format_money,
    format_pct,
    format_ratio,
    format_sig,
    label,
)
from pipelines.publish.report_data import _load, _model_runs, _run_header
from pipelines.publish.report_model_sections import _bgnbd_section, _churn_section
from pipelines.publish.report_sections import (
    FILE_MEASURES,
    _clv_section,
    _data_quality_section,
    _exports_reason,
    _freshness_notes,
    _headline,
    _kpi_section,
    _lifecycle_section,
    _rfm_section,
)

__all__ = [
    "FILE_MEASURES",
    "REPORT_FILE_NAME",
    "TEMPLATE_DIR",
    "TEMPLATE_NAME",
    "collect_report_context",
    "render_report",
    "report_path",
    "stage_report",
    "write_report",
]

TEMPLATE_DIR = asset_dir("templates")
TEMPLATE_NAME = "report.html.j2"
REPORT_FILE_NAME = "report.html"


# --------------------------------------------------------------------------- entry point


def report_path(settings: Settings, as_of: date) -> Path:
    """Where the report of ``as_of`` is published: ``<report.path>/<as_of>/report.html``."""
    return settings.report.path / as_of.isoformat() / REPORT_FILE_NAME


def write_report(
    con: duckdb.DuckDBPyConnection,
    out_path: Path,
    *,
    run_id: str,
    as_of: date,
    currency: str | None = None,
) -> Path:
    """Write the run's report to ``out_path`` as one self-contained HTML file.

    Parameters
    ----------
    con : DuckDB connection to the working database, after the marts step.
    out_path : the file to write, usually ``reports/<as_of>/report.html``; its directory
        is created. The file is written to a temporary file beside it and moved into place,
        so a reader never sees half a report and a failure leaves the last one.
    run_id, as_of : the run whose rows are reported, and its observation date.
    currency : ISO code of the base currency amounts are in (``currency.base``), for labels.

    Returns
    -------
    The path written.
    """
    context = collect_report_context(con, run_id=run_id, as_of=as_of, currency=currency)
    # the run's Data Docs site, when it was built beside the report (publish step)
    docs = Path(out_path).parent / "data_docs" / "index.html"
    context["data_docs"] = "data_docs/index.html" if docs.is_file() else None
    # A report is meant to be shared (no personal data): a new one is 0644.
    return write_text_atomically(
        Path(out_path), render_report(context), run_id, new_file_mode=0o644
    )


def stage_report(
    con: duckdb.DuckDBPyConnection,
    out_path: Path,
    *,
    run_id: str,
    as_of: date,
    currency: str | None = None,
    file_mode: int = 0o600,
    dir_mode: int = 0o700,
    group: str | None = None,
    data_docs: str | None = None,
) -> Path:
    """Write the run's report (as :func:`write_report`) beside ``out_path`` under its
    hidden temporary name, flushed to disk; returns that path. Nothing is published:
    the publish journal moves it into place. Folders created for it get ``dir_mode``
    and ``group`` (the file's mode is set by the journal from ``[permissions]``).
    ``data_docs`` is the link, relative to the report, to the run's Data Docs site
    published with it (None: the run validated nothing, no link)."""
    context = collect_report_context(con, run_id=run_id, as_of=as_of, currency=currency)
    context["data_docs"] = data_docs
    out_path = Path(out_path)
    make_dirs(out_path.parent, dir_mode, group)
    temporary = temp_path_for(out_path, run_id)
    remove_stale_temp_files(out_path)
    try:
        with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(render_report(context))
        os.chmod(temporary, file_mode)
        fsync_file(temporary)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return temporary


def render_report(context: dict[str, Any]) -> str:
    """The HTML text of the report for a context from :func:`collect_report_context`."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        count=format_count,
        money=format_money,
        ratio=format_ratio,
        pct=format_pct,
        sig=format_sig,
        label=label,
    )
    return env.get_template(TEMPLATE_NAME).render(**context)


def collect_report_context(
    con: duckdb.DuckDBPyConnection, *, run_id: str, as_of: date, currency: str | None = None
) -> dict[str, Any]:
    """Everything the template shows, read from the warehouse; charts rendered to SVG."""
    segments, segments_reason = _load(
        con,
        "marts.segment_summary",
        (
            "dimension",
            "segment",
            "customers",
            "share_of_customers",
            "consenting_customers",
            "revenue_total",
            "net_revenue",
            "average_predicted_clv",
            "total_predicted_clv",
            "average_churn_probability",
        ),
        run_id,
    )
    by_dimension: dict[str, list[dict]] = {}
    for row in segments:
        by_dimension.setdefault(row["dimension"], []).append(row)
    metrics, metrics_reason = _load(
        con,
        "marts.model_metrics",
        ("model", "metric", "value", "baseline"),
        run_id,
        optional=("message",),
    )
    runs = _model_runs(metrics)
    parameters, parameters_reason = _load(
        con, "marts.model_parameters", ("model", "parameter", "value", "std_error"), run_id
    )
    money_unit = f" ({currency})" if currency else ""
    return {
        "run_id": run_id,
        "as_of": as_of,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "currency": currency,
        "money_unit": money_unit,
        "run": _run_header(con, run_id),
        "headline": _headline(by_dimension),
        "exports_reason": _exports_reason(con),
        "freshness": _freshness_notes(con, run_id),
        "data_quality": _data_quality_section(con, run_id),
        "segments": _rfm_section(by_dimension, segments_reason, money_unit),
        "clv": _clv_section(by_dimension, segments_reason, runs, money_unit),
        "churn": _churn_section(
            con, run_id, by_dimension, segments_reason, metrics, metrics_reason, runs
        ),
        "kpis": _kpi_section(con, run_id, as_of, money_unit),
        "bgnbd": _bgnbd_section(parameters, parameters_reason, metrics, metrics_reason, runs),
        "lifecycle": _lifecycle_section(by_dimension, segments_reason),
    }
