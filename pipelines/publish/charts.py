"""The report's charts: one function per chart, each returning it as SVG to inline.

Charts are matplotlib figures drawn by its SVG backend and inlined in the page. Matplotlib
is already pinned for the project and gets axes, ticks, dates and error bars right; its
vector output needs no script, no font file and no network, prints sharply and scales.
Text stays text (``svg.fonttype = 'none'``): the SVG stays small and searchable and the
browser draws it with the page's local fonts. Each SVG is rewritten for inlining (no XML
prolog, no namespace URLs, ids prefixed with the chart's key so several charts share one
page) and every data mark (a bar, a line) carries the id ``<key>-mark-<n>``, so a test
can count what the browser drew.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

import matplotlib
from markupsafe import Markup, escape
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from pipelines.publish.formatting import (
    _missing,
    format_count,
    format_money,
    format_ratio,
    label,
)

# Okabe & Ito's colour-blind-safe palette.
BLUE, ORANGE, GREEN, VERMILION, SKY, PURPLE, GREY = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#56B4E9",
    "#CC79A7",
    "#8C8C8C",
)
BAND_COLOURS = {"low": GREEN, "medium": ORANGE, "high": VERMILION}
SCORER_COLOURS = {"model": BLUE, "recency": ORANGE, "p_no_purchase": GREEN}

_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.dpi": 72,
}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}


@dataclass(frozen=True)
class Chart:
    """One inline SVG chart; ``marks`` is how many data marks (bars, lines) it draws."""

    key: str
    title: str
    svg: Markup
    marks: int


class _Marks:
    """Gives each data artist the id ``mark-<n>`` (prefixed with the chart key later)."""

    def __init__(self) -> None:
        self.count = 0

    def tag(self, artists: Iterable) -> None:
        for artist in artists:
            artist.set_gid(f"mark-{self.count}")
            self.count += 1


def _render(
    key: str, title: str, size: tuple[float, float], draw: Callable[[Figure, _Marks], None]
) -> Chart:
    with matplotlib.rc_context({**_RC, "svg.hashsalt": key}):
        fig = Figure(figsize=size, layout="constrained")
        marks = _Marks()
        draw(fig, marks)
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", metadata=_NO_METADATA)
    return Chart(
        key=key,
        title=title,
        svg=Markup(_inline_svg(buffer.getvalue(), key, title)),
        marks=marks.count,
    )


def _inline_svg(svg: str, key: str, title: str) -> str:
    """Matplotlib's standalone SVG made fit to sit inside an HTML page: no XML prolog or
    DOCTYPE, no namespace URLs (HTML needs none), no global <style>, ids unique per chart,
    sized by CSS from its viewBox, with an accessible title."""
    svg = svg[svg.index("<svg") :]
    root_end = svg.index(">") + 1
    view_box = re.search(r'viewBox="([^"]+)"', svg[:root_end]).group(1)
    # At most 5/3 px per pt: a 7.5 in (540 pt) figure shows at up to 900 px, like the text.
    max_width = float(view_box.split()[2]) * 5 / 3
    body = svg[root_end:]
    body = re.sub(r"<style[^>]*>.*?</style>", "", body, flags=re.S)
    body = re.sub(r"<defs>\s*</defs>", "", body)
    body = body.replace("xlink:href=", "href=")
    body = re.sub(r'\bid="([^"]+)"', rf'id="{key}-\1"', body)
    body = re.sub(r"url\(#([^)]+)\)", rf"url(#{key}-\1)", body)
    body = re.sub(r'href="#([^"]+)"', rf'href="#{key}-\1"', body)
    if "http://" in body or "https://" in body:
        raise ValueError(f"chart {key} refers to a URL; the report must open offline")
    return (
        f'<svg class="chart-svg" id="chart-{key}" viewBox="{view_box}" '
        f'style="max-width: {max_width:.0f}px" role="img" '
        f'aria-labelledby="chart-{key}-title"><title id="chart-{key}-title">{escape(title)}'
        f"</title>{body}"
    )


def _numbers(values) -> list[float]:
    return [math.nan if _missing(v) else float(v) for v in values]


def _thousands(value, _pos=None) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == 0 else f"{value:,.2g}"


def _bar_height(n: int, panels: int = 1) -> float:
    return max(1.8, 0.7 + (0.24 if panels == 1 else 0.17) * n * panels)


def _chart_bars(
    key, title, names, series, series_names, *, colours, xlabel, horizontal=True
) -> Chart:
    """Bars per category; several series are grouped side by side."""
    n, k = len(names), len(series)

    def draw(fig, marks):
        ax = fig.add_subplot()
        width = 0.8 / k
        positions = range(n)
        for i, (values, name, colour) in enumerate(zip(series, series_names, colours)):
            offsets = [p - 0.4 + width * (i + 0.5) for p in positions]
            if horizontal:
                bars = ax.barh(offsets, _numbers(values), height=width, color=colour, label=name)
            else:
                bars = ax.bar(offsets, _numbers(values), width=width, color=colour, label=name)
            marks.tag(bars.patches)
            ax.bar_label(bars, labels=[format_count(v) for v in values], padding=2, fontsize=7.5)
        if horizontal:
            ax.set_yticks(list(positions), names)
            ax.invert_yaxis()
            ax.set_xlabel(xlabel)
            ax.grid(axis="y", visible=False)
            ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
            ax.margins(x=0.12)
        else:
            ax.set_xticks(list(positions), names)
            ax.set_ylabel(xlabel)
            ax.grid(axis="x", visible=False)
            ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
            ax.margins(y=0.12)
        if k > 1:
            ax.legend(loc="lower right")

    size = (7.5, _bar_height(n, k)) if horizontal else (5.0, 2.6)
    return _render(key, title, size, draw)


def _chart_panels(key, title, names, panels) -> Chart:
    """One horizontal bar panel per measure, sharing the category axis."""

    def draw(fig, marks):
        axes = fig.subplots(1, len(panels), sharey=True)
        for ax, (measure, values, colour, fmt) in zip(axes, panels):
            bars = ax.barh(range(len(names)), _numbers(values), color=colour, height=0.7)
            marks.tag(bars.patches)
            ax.bar_label(bars, labels=[fmt(v) for v in values], padding=2, fontsize=7.5)
            ax.set_title(measure, fontsize=9, fontweight="normal")
            ax.grid(axis="y", visible=False)
            ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
            ax.margins(x=0.3)
            ax.tick_params(axis="x", labelsize=7.5)
        axes[0].set_yticks(range(len(names)), names)
        axes[0].invert_yaxis()

    return _render(key, title, (7.5, max(1.8, 0.8 + 0.26 * len(names))), draw)


def _chart_file_rows(files: list[dict]) -> Chart:
    """Rows per file, stacked by outcome: loaded, quarantined, duplicate."""
    names = [f["label"] for f in files]
    parts = [
        ("rows loaded", "rows_loaded", BLUE),
        ("rows quarantined", "rows_quarantined", VERMILION),
        ("rows duplicate", "rows_duplicate", ORANGE),
    ]

    def draw(fig, marks):
        ax = fig.add_subplot()
        left = [0.0] * len(files)
        for name, column, colour in parts:
            values = [float(f[column]) for f in files]
            bars = ax.barh(
                range(len(files)), values, left=left, color=colour, label=name, height=0.6
            )
            marks.tag(bars.patches)
            left = [a + b for a, b in zip(left, values)]
        ax.set_yticks(range(len(files)), names)
        ax.invert_yaxis()
        ax.set_xlabel("rows read")
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(files) < 3 else -0.2), ncols=3
        )

    return _render(
        "file-rows",
        "Rows per file: loaded, quarantined, duplicate",
        (7.5, max(2.0, 1.2 + 0.35 * len(files))),
        draw,
    )


def _chart_churn_metrics(quality: list[dict]) -> Chart:
    """Small multiples: one panel per metric, the churn model next to each baseline."""
    shown = [
        q for q in quality if q["metric"] in ("roc_auc", "pr_auc", "brier_score", "top_decile_lift")
    ]
    scorers = [
        ("model", "churn model"),
        ("recency", "recency"),
        ("p_no_purchase", "P(no purchase)"),
    ]

    # One axis: the four metrics share a 0-1.x scale well enough to compare scorers per group.
    present = [(s, name) for s, name in scorers if any(not _missing(q[s]) for q in shown)]
    width = 0.8 / max(len(present), 1)

    def draw(fig, marks):
        ax = fig.add_subplot()
        for i, (scorer, name) in enumerate(present):
            values = [q[scorer] for q in shown]
            bars = ax.bar(
                [g - 0.4 + width * (i + 0.5) for g in range(len(shown))],
                _numbers(values),
                width=width,
                color=SCORER_COLOURS[scorer],
                label=name,
            )
            marks.tag(bars.patches)
            ax.bar_label(bars, labels=[format_ratio(v) for v in values], padding=2, fontsize=7)
        ax.set_xticks(
            range(len(shown)),
            [
                f"{label(q['metric'])}\n({'lower' if q['lower_is_better'] else 'higher'} is better)"
                for q in shown
            ],
        )
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.12)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))

    return _render(
        "churn-metrics", "Churn model against the baselines on the test set", (7.5, 2.8), draw
    )


def _chart_calibration(points: dict[str, list[tuple[float, float]]]) -> Chart:
    names = {"model": "churn model", "recency": "recency", "p_no_purchase": "P(no purchase)"}

    def draw(fig, marks):
        ax = fig.add_subplot()
        ax.plot(
            [0, 1], [0, 1], color=GREY, linewidth=0.8, linestyle="--", label="perfectly calibrated"
        )
        for scorer, pairs in points.items():
            lines = ax.plot(
                [p for p, _ in pairs],
                [o for _, o in pairs],
                marker="o",
                markersize=3.5,
                color=SCORER_COLOURS[scorer],
                label=names[scorer],
            )
            marks.tag(lines)
        ax.set_xlabel("mean churn probability (decile)")
        ax.set_ylabel("observed churn rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_aspect("equal")
        ax.legend(loc="upper left")

    return _render(
        "churn-calibration", "Calibration: predicted and observed churn by decile", (4.2, 3.6), draw
    )


def _chart_importances(importances: list[dict]) -> Chart:
    names = [label(i["feature"]) for i in importances]

    def draw(fig, marks):
        ax = fig.add_subplot()
        bars = ax.barh(
            range(len(names)),
            _numbers(i["importance_mean"] for i in importances),
            xerr=[0 if _missing(i["importance_std"]) else i["importance_std"] for i in importances],
            color=PURPLE,
            height=0.7,
            error_kw={"ecolor": "#444444", "elinewidth": 0.8, "capsize": 2},
        )
        marks.tag(bars.patches)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("drop in test ROC AUC when the feature is shuffled (mean ± std)")
        ax.grid(axis="y", visible=False)
        ax.axvline(0, color="#555555", linewidth=0.6)

    return _render(
        "churn-importances",
        f"Top {len(names)} permutation importances",
        (7.5, max(2.0, 0.7 + 0.24 * len(names))),
        draw,
    )


def _chart_monthly(key, title, months, partial, series, *, bars=False, percent=False) -> Chart:
    """Monthly series as bars or lines; the partial as-of month is drawn hatched (bars)
    or with a hollow point (lines)."""

    def draw(fig, marks):
        ax = fig.add_subplot()
        drawn_series = 0
        for name, values, colour in series:
            values = _numbers(values)
            if all(math.isnan(v) for v in values):
                continue
            drawn_series += 1
            if bars:
                drawn = ax.bar(months, values, width=20, color=colour, label=name)
                for bar, is_partial in zip(drawn.patches, partial):
                    if is_partial:
                        bar.set_alpha(0.45)
                        bar.set_hatch("///")
                marks.tag(drawn.patches)
            else:
                marks.tag(
                    ax.plot(
                        months,
                        values,
                        color=colour,
                        linewidth=1.6,
                        marker="o",
                        markersize=2.5,
                        label=name,
                    )
                )
                ends = [(m, v) for m, v, p in zip(months, values, partial) if p]
                if ends:
                    ax.plot(
                        *zip(*ends),
                        linestyle="none",
                        marker="o",
                        markersize=4,
                        markerfacecolor="white",
                        markeredgecolor=colour,
                    )
        if percent:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
        else:
            ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", visible=False)
        _month_axis(ax)
        if len(series) > 1 and drawn_series:
            ax.legend(loc="upper left", ncols=len(series))

    return _render(key, title, (7.5, 2.5), draw)


def _month_axis(ax) -> None:
    locator = AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _chart_satisfaction(months, partial, nps, csat) -> Chart:
    """NPS in points (-100..100) and CSAT as the share of satisfied answers (0-1)."""
    panels = [
        p
        for p in (
            ("NPS (points)", nps, BLUE, (-100, 100)),
            ("CSAT (share satisfied)", csat, GREEN, (0, 1)),
        )
        if p[1] is not None
    ]

    def draw(fig, marks):
        axes = fig.subplots(1, len(panels), squeeze=False, sharex=True)[0]
        for ax, (name, values, colour, limits) in zip(axes, panels):
            values = _numbers(values)
            marks.tag(
                ax.plot(months, values, color=colour, linewidth=1.6, marker="o", markersize=2.5)
            )
            ends = [(m, v) for m, v, p in zip(months, values, partial) if p]
            if ends:
                ax.plot(
                    *zip(*ends),
                    linestyle="none",
                    marker="o",
                    markersize=4,
                    markerfacecolor="white",
                    markeredgecolor=colour,
                )
            ax.set_title(name, fontsize=9, fontweight="normal")
            ax.set_ylim(*limits)
            if limits == (0, 1):
                ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))
            ax.set_xlim(months[0] - timedelta(days=15), months[-1] + timedelta(days=15))
            ax.grid(axis="x", visible=False)
            _month_axis(ax)

    return _render("kpi-satisfaction", "NPS and CSAT by month", (7.5, 2.4), draw)


def _chart_holdout(holdout: dict) -> Chart:
    """Repeat purchases in the holdout window: actual, BG/NBD and the naive rate; MAE."""

    def draw(fig, marks):
        left, right = fig.subplots(1, 2, width_ratios=(3, 2))
        names = ["actual", "BG/NBD", "naive rate"]
        values = [
            holdout["actual"],
            holdout["predicted"].get("value"),
            holdout["predicted"].get("baseline"),
        ]
        bars = left.bar(range(3), _numbers(values), color=[GREY, BLUE, ORANGE], width=0.65)
        marks.tag(bars.patches)
        left.bar_label(bars, labels=[format_money(v) for v in values], padding=2, fontsize=7.5)
        left.set_xticks(range(3), names)
        left.set_title("repeat purchases in the holdout window", fontsize=9, fontweight="normal")
        left.yaxis.set_major_formatter(FuncFormatter(_thousands))
        mae = [holdout["mae"].get("value"), holdout["mae"].get("baseline")]
        bars = right.bar(range(2), _numbers(mae), color=[BLUE, ORANGE], width=0.6)
        marks.tag(bars.patches)
        right.bar_label(bars, labels=[format_ratio(v) for v in mae], padding=2, fontsize=7.5)
        right.set_xticks(range(2), names[1:])
        right.set_title("MAE per customer (lower is better)", fontsize=9, fontweight="normal")
        for ax in (left, right):
            ax.grid(axis="x", visible=False)
            ax.margins(y=0.15)

    return _render(
        "clv-holdout",
        "BG/NBD holdout check: predicted and actual repeat purchases",
        (7.5, 2.6),
        draw,
    )
