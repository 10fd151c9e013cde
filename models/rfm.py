"""RFM scores and segments.

``sql/models/rfm.sql`` builds ``models.rfm`` (one row per customer with a completed order:
recency_days, frequency, monetary_value, ...); :func:`score_rfm` adds quintile scores and the
named segment from a recency x frequency grid. Frames in, frames out (Polars).

Scores
    r_score, f_score, m_score are 1-5: score = floor(5 * below / n) + 1, where n is the number
    of customers and ``below`` the number of customers with a strictly worse value (for
    recency: strictly more days since the last order; for frequency and monetary_value:
    strictly smaller). Hence

    - equal values always get the same score (no arbitrary split of ties by id or row order),
      and the result does not depend on row order;
    - the worst value always scores 1 (one-time buyers are f_score 1 however many they are);
    - with many ties the five groups are unequal and a score can be skipped (e.g. f_score
      1, 4, 5 when 60% bought once): quintiles of customers, not of distinct values.
    - score 5 needs at least 80% of customers strictly below, so with fewer than five
      customers the top scores are not reached (two customers score 1 and 3).

Segments
    The grid maps every (r_score, f_score) cell to one segment. The default is the common
    11-segment grid (rows r_score 5..1, columns f_score 1..5)::

        r=5  new_customers   potential_loyalists potential_loyalists champions        champions
        r=4  promising       potential_loyalists potential_loyalists loyal            loyal
        r=3  about_to_sleep  about_to_sleep      need_attention      loyal            loyal
        r=2  hibernating     hibernating         at_risk             at_risk          cannot_lose_them
        r=1  lost            lost                at_risk             at_risk          cannot_lose_them

    A config table replaces it entirely (see :meth:`RfmGrid.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

__all__ = ["DEFAULT_RFM_GRID", "RfmGrid", "SegmentRule", "score_rfm"]

SCORES = 5
_SCORE_RANGE = range(1, SCORES + 1)


@dataclass(frozen=True)
class SegmentRule:
    """One rectangle of the grid: ``segment`` for r_score in r[0]..r[1] and f_score in f[0]..f[1]."""

    segment: str
    r: tuple[int, int]
    f: tuple[int, int]

    def cells(self) -> list[tuple[int, int]]:
        return [
            (r, f) for r in range(self.r[0], self.r[1] + 1) for f in range(self.f[0], self.f[1] + 1)
        ]


_DEFAULT_RULES = (
    SegmentRule("champions", (5, 5), (4, 5)),
    SegmentRule("loyal", (3, 4), (4, 5)),
    SegmentRule("potential_loyalists", (4, 5), (2, 3)),
    SegmentRule("new_customers", (5, 5), (1, 1)),
    SegmentRule("promising", (4, 4), (1, 1)),
    SegmentRule("need_attention", (3, 3), (3, 3)),
    SegmentRule("about_to_sleep", (3, 3), (1, 2)),
    SegmentRule("at_risk", (1, 2), (3, 4)),
    SegmentRule("cannot_lose_them", (1, 2), (5, 5)),
    SegmentRule("hibernating", (2, 2), (1, 2)),
    SegmentRule("lost", (1, 1), (1, 2)),
)


@dataclass(frozen=True)
class RfmGrid:
    """Recency x frequency grid of named segments; every cell must be covered exactly once.

    ``rules`` is an ordered tuple of :class:`SegmentRule`; a segment may have several
    rectangles. Construction validates the grid and raises ValueError naming the first cell
    that is uncovered or covered twice.
    """

    rules: tuple[SegmentRule, ...] = _DEFAULT_RULES

    def __post_init__(self):
        _validate_rules(self.rules, "rfm.segments")

    @property
    def segments(self) -> tuple[str, ...]:
        """Segment names in rule order, each once."""
        return tuple(dict.fromkeys(rule.segment for rule in self.rules))

    def mapping(self) -> dict[int, str]:
        """{10 * r_score + f_score: segment} for all 25 cells."""
        return {10 * r + f: rule.segment for rule in self.rules for r, f in rule.cells()}

    @classmethod
    def from_dict(cls, d: Mapping, key: str = "rfm.segments") -> RfmGrid:
        """Build a grid from config; it replaces the default grid entirely.

        ``d`` maps each segment name to a rectangle ``{r = [low, high], f = [low, high]}`` (a
        single score may be given as an int) or to a list of such rectangles::

            [rfm.segments]
            champions = { r = [5, 5], f = [4, 5] }
            at_risk = [{ r = [1, 2], f = [3, 4] }]

        Raises ValueError naming the key (``rfm.segments.champions.r ...``) or the cell.
        """
        if not isinstance(d, Mapping) or not d:
            raise ValueError(
                f"{key} must be a table of segment = {{ r = [low, high], f = [low, high] }}"
            )
        rules = []
        for segment, spec in d.items():
            if not isinstance(segment, str) or not segment.strip():
                raise ValueError(f"{key}: segment names must be non-empty text, got {segment!r}")
            rectangles = (
                spec if isinstance(spec, Sequence) and not isinstance(spec, str) else [spec]
            )
            if not rectangles:
                raise ValueError(
                    f"{key}.{segment} must list at least one {{ r = [low, high], f = [low, high] }}"
                )
            for rectangle in rectangles:
                if not isinstance(rectangle, Mapping):
                    raise ValueError(
                        f"{key}.{segment} must be {{ r = [low, high], f = [low, high] }}, got {rectangle!r}"
                    )
                if set(rectangle) != {"r", "f"}:
                    given = ", ".join(map(str, rectangle)) or "none"
                    raise ValueError(
                        f"{key}.{segment} must have exactly the keys r and f, got {given}"
                    )
                ranges = {
                    name: _score_range(rectangle[name], f"{key}.{segment}.{name}")
                    for name in ("r", "f")
                }
                rules.append(SegmentRule(segment, ranges["r"], ranges["f"]))
        _validate_rules(rules, key)
        return cls(tuple(rules))


def _validate_rules(rules: Sequence[SegmentRule], key: str) -> None:
    """Raise ValueError (naming ``key`` and the cell) unless every cell is covered exactly once."""
    owner: dict[tuple[int, int], str] = {}
    for rule in rules:
        for name, (low, high) in (("r", rule.r), ("f", rule.f)):
            if not (1 <= low <= high <= SCORES):
                raise ValueError(
                    f"{key}.{rule.segment}.{name} must be a score range [low, high] with "
                    f"1 <= low <= high <= {SCORES}, got [{low}, {high}]"
                )
        for cell in rule.cells():
            if cell in owner:
                raise ValueError(
                    f"{key}: cell r={cell[0]}, f={cell[1]} is covered twice, "
                    f"by {owner[cell]!r} and {rule.segment!r}"
                )
            owner[cell] = rule.segment
    for r in _SCORE_RANGE:
        for f in _SCORE_RANGE:
            if (r, f) not in owner:
                raise ValueError(f"{key}: cell r={r}, f={f} is not covered by any segment")


def _score_range(value, key: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not (1 <= value[0] <= value[1] <= SCORES)
    ):
        raise ValueError(
            f"{key} must be a score range [low, high] with 1 <= low <= high <= {SCORES}, got {value!r}"
        )
    return (value[0], value[1])


DEFAULT_RFM_GRID = RfmGrid()


def _score(column: str, *, descending: bool) -> pl.Expr:
    # rank 'min' - 1 = customers strictly worse; integer arithmetic keeps cut points exact
    below = pl.col(column).rank("min", descending=descending).cast(pl.Int64) - 1
    return (below * SCORES // pl.len().cast(pl.Int64) + 1).cast(pl.Int8)


def score_rfm(rfm: pl.DataFrame, *, grid: RfmGrid = DEFAULT_RFM_GRID) -> pl.DataFrame:
    """Add r_score, f_score, m_score (1-5) and rfm_segment to ``models.rfm`` rows.

    Parameters
    ----------
    rfm : DataFrame
        One row per customer with recency_days (days since the last completed order),
        frequency (completed orders) and monetary_value (net revenue), none null.
    grid : RfmGrid
        Recency x frequency segment grid; default :data:`DEFAULT_RFM_GRID`.

    Returns
    -------
    The input rows in the same order with r_score, f_score, m_score (Int8) and rfm_segment
    (String) added. Scores are relative to the customers in the frame (see the module docstring
    for ties).
    """
    required = ("recency_days", "frequency", "monetary_value")
    missing = [c for c in required if c not in rfm.columns]
    if missing:
        raise ValueError(f"rfm lacks column(s) {', '.join(missing)}")
    nulls = [c for c in required if rfm.get_column(c).null_count()]
    if nulls:
        raise ValueError(f"rfm has null values in {', '.join(nulls)}")
    mapping = grid.mapping()
    scored = rfm.with_columns(
        # fewer days since the last order is better: rank descending so the oldest score 1
        _score("recency_days", descending=True).alias("r_score"),
        _score("frequency", descending=False).alias("f_score"),
        _score("monetary_value", descending=False).alias("m_score"),
    )
    return scored.with_columns(
        (pl.col("r_score").cast(pl.Int64) * 10 + pl.col("f_score").cast(pl.Int64))
        .replace_strict(mapping, return_dtype=pl.String)
        .alias("rfm_segment")
    )
