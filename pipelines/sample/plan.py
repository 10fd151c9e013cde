"""How a generation is split into chunks of people (records and ids per chunk), and the
small vectorised helpers that draw categories and turn operational times into timestamps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl

from pipelines.sample.countries import _COUNTRY_DATA
from pipelines.sample.parameters import (
    _DAY_SHARE_KNOTS,
    _HOUR_KNOTS,
    CHUNK_PERSONS,
    CUSTOMER_ID_WIDTH,
    DUPLICATE_SHARE,
    PROSPECT_SHARE,
)

# ---------------------------------------------------------------------------
# Plan: how people, records and ids are split over chunks.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    index: int
    buyers: int
    prospects: int
    duplicates: int
    first_person: int  # global index of the chunk's first person (its buyers, then prospects)
    first_record: int  # customer records in earlier chunks: CustomerIDs come in blocks


@dataclass(frozen=True)
class _Plan:
    customers: int
    prospects: int
    duplicates: int
    persons: int
    start: date
    end: date
    horizon_days: float  # length of the window in days, `end` included
    start_epoch: int  # UTC epoch seconds of `start` 00:00
    email_modulus: int
    chunks: tuple[_Chunk, ...]

    @classmethod
    def build(cls, customers: int, start: date, end: date) -> _Plan:
        prospects = round(customers * PROSPECT_SHARE)
        persons = customers + prospects
        n_chunks = max(1, math.ceil(persons / CHUNK_PERSONS))
        # Only buyers get a second record: their split order history is what makes it costly.
        duplicates = min(round(persons * DUPLICATE_SHARE), customers)
        chunks, first_person, records = [], 0, 0
        for k in range(n_chunks):
            buyers = _share(customers, k, n_chunks)
            chunk_prospects = _share(prospects, k, n_chunks)
            dups = min(_share(duplicates, k, n_chunks), buyers)
            chunks.append(_Chunk(k, buyers, chunk_prospects, dups, first_person, records))
            first_person += buyers + chunk_prospects
            records += buyers + chunk_prospects + dups
        duplicates = records - persons
        if records >= 10**CUSTOMER_ID_WIDTH:
            raise ValueError(
                f"{records} customer records do not fit the {CUSTOMER_ID_WIDTH}-digit "
                f"CustomerID; generate fewer than ~{10**CUSTOMER_ID_WIDTH // 1.13:.0f} customers"
            )
        for code, data in _COUNTRY_DATA.items():
            capacity = len(data["prefixes"]) * 10 ** min(n for _, n in data["prefixes"])
            if persons > capacity:
                raise ValueError(
                    f"{persons} people do not fit the phone number plan of {code} "
                    f"({capacity} numbers); generate fewer customers"
                )
        # Numbers in e-mail addresses: one per person plus one per second address.
        email_modulus = 10 ** max(4, len(str(2 * persons)))
        start_epoch = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
        return cls(
            customers,
            prospects,
            duplicates,
            persons,
            start,
            end,
            float((end - start).days + 1),
            start_epoch,
            email_modulus,
            tuple(chunks),
        )


def _share(total: int, k: int, parts: int) -> int:
    """Part k of `total` split into `parts` near-equal integer parts."""
    return total * (k + 1) // parts - total * k // parts


# ---------------------------------------------------------------------------
# Small vectorised helpers.
# ---------------------------------------------------------------------------


def _to_epoch(plan: _Plan, t_days: np.ndarray) -> np.ndarray:
    """UTC epoch seconds of operational times (days since start), given a time of day."""
    day = np.floor(t_days)
    within = np.interp(t_days - day, _DAY_SHARE_KNOTS, _HOUR_KNOTS)
    return plan.start_epoch + np.floor((day + within) * 86400.0).astype(np.int64)


def _timestamps(plan: _Plan, t_days: np.ndarray) -> pl.Series:
    """Datetime column of operational times; NaN becomes null."""
    known = ~np.isnan(t_days)
    column = pl.from_epoch(pl.Series(_to_epoch(plan, np.where(known, t_days, 0.0))), time_unit="s")
    return column.scatter(np.flatnonzero(~known), None) if not known.all() else column


def _draw(rng: np.random.Generator, probs, size: int) -> np.ndarray:
    """Category indices with the given probabilities."""
    return np.searchsorted(np.cumsum(probs), rng.random(size) * (1 - 1e-12), side="right")


def _draw_rows(rng: np.random.Generator, table: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One category per entry, from the probability row `table[row]`."""
    cum = np.cumsum(table, axis=1)
    u = rng.random(row.size) * (1 - 1e-12)
    return (u[:, None] >= cum[row]).sum(axis=1)


def _first_index(groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For entries sorted by group, the index of the group's first entry."""
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)[groups]


def _text(values: list[str | None]) -> pl.Series:
    return pl.Series(values, dtype=pl.String)
