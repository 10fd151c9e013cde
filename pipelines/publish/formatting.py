"""How the report writes numbers and names: counts, money, ratios, percentages, fitted
parameters and column or segment labels. Used by the report's sections and tables (the
Jinja filters of :func:`pipelines.publish.report.render_report`) and by its charts.
"""

from __future__ import annotations

import math

# How names are shown: the column name with spaces, these words and names spelled out.
_WORDS = {
    "clv": "CLV",
    "rfm": "RFM",
    "nps": "NPS",
    "csat": "CSAT",
    "roc": "ROC",
    "auc": "AUC",
    "pr": "PR",
    "mae": "MAE",
    "bgnbd": "BG/NBD",
    "mbgnbd": "MBG/NBD",
    "pareto_nbd": "Pareto/NBD",
    "id": "ID",
    "ids": "IDs",
}
_NAMES = {
    "p_alive": "p_alive",
    "bgnbd": "BG/NBD",
    "mbgnbd": "MBG/NBD",
    "pareto_nbd": "Pareto/NBD",
    "gamma_gamma": "Gamma-Gamma",
    "top_decile_lift": "top-decile lift",
    "top_decile_capture_rate": "top-decile capture rate",
    "brier_score": "Brier score",
    "T": "T",
    "next_order_date": "expected next order date",
}
NONE_LABEL = "(none)"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_count(value) -> str:
    """Whole numbers with thousands separators: 3,000."""
    return "–" if _missing(value) else f"{round(value):,}"


def format_money(value, digits: int = 0) -> str:
    """Amounts with thousands separators: 411,827 (digits=0) or 34.35 (digits=2)."""
    return "–" if _missing(value) else f"{value:,.{digits}f}"


def format_ratio(value, digits: int = 3) -> str:
    """Model metrics: 0.901."""
    return "–" if _missing(value) else f"{value:.{digits}f}"


def format_pct(value, digits: int = 1) -> str:
    """A share 0–1 as a percentage: 0.81 -> 81.0%."""
    return "–" if _missing(value) else f"{100 * value:.{digits}f}%"


def format_sig(value, digits: int = 4) -> str:
    """Fitted parameters to four significant digits: 0.8226, 49.97."""
    return "–" if _missing(value) else f"{value:.{digits}g}"


def label(name) -> str:
    """A column or segment name as text: 'predicted_clv' -> 'predicted CLV'."""
    if name is None:
        return NONE_LABEL
    name = str(name)
    if name in _NAMES:
        return _NAMES[name]
    return " ".join(_WORDS.get(word, word) for word in name.split("_"))
