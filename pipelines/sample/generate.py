"""Synthetic exports of an online shop, with the ground truth that produced them.

`generate_sample` writes what a shop's source system would export (its own column
names, not our canonical ones) plus a `truth/` folder with the parameters and the
per-person latent values, so that deduplication and the models can be checked
against known answers.

Completed orders follow the BG/NBD process exactly (Fader, Hardie & Lee 2005,
"Counting your customers the easy way") and their values follow the Gamma-Gamma
model (Fader, Hardie & Lee 2005, "RFM and CLV: using iso-value curves"), in the
parametrisation of lifetimes' `BetaGeoFitter` and `GammaGammaFitter`:

- lambda ~ Gamma(shape r, rate alpha), purchases per DAY while alive;
- p ~ Beta(a, b); after every REPEAT purchase the customer drops out with
  probability p (the first purchase never ends a life: the BG/NBD likelihood of a
  customer with x = 0 repeat purchases is exp(-lambda T), i.e. alive at birth);
- order value z ~ Gamma(shape p_gg, rate nu), nu ~ Gamma(shape q, rate gamma)
  (lifetimes calls gamma "v"); mean order value p_gg * gamma / (q - 1).

Everything else (cancelled and refunded orders, returns, events, duplicate
customer records) is added around those purchases without changing them.

This module is the process as a whole: the arguments, the random streams (one per
chunk of people), the order of the draws within a chunk (:func:`_generate_chunk`) and
the files. The draws of one chunk are in :mod:`pipelines.sample.chunk`, its
transactions.csv rows in :mod:`pipelines.sample.transactions`.
"""

from __future__ import annotations

import json
import numbers
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
from tqdm import tqdm

from pipelines.sample.chunk import (
    _customer_ids,
    _draw_buyers,
    _draw_duplicates,
    _draw_habits,
    _draw_orders,
    _draw_signups,
    _events,
    _truth,
)
from pipelines.sample.customers import _customer_records
from pipelines.sample.parameters import (
    _COMPLETED,
    _TS_FORMAT,
    AFTER_DROPOUT_RATE_SHARE,
    BGNBD_A,
    BGNBD_ALPHA_DAYS,
    BGNBD_B,
    BGNBD_R,
    BIRTH_WINDOW_SHARE,
    CANCELLED_SHARE,
    CATALOGUE_SIZE,
    CUSTOMER_COLUMNS,
    DUPLICATE_SHARE,
    EVENT_RATE_PER_PURCHASE_RATE,
    FADE_DAYS,
    FADE_FLOOR,
    FOREIGN_CURRENCY_SHARE,
    FX_RATES_PER_EUR,
    GG_GAMMA,
    GG_P,
    GG_Q,
    PROSPECT_SHARE,
    REFUNDED_SHARE,
    RETURN_SHARE,
    TRANSACTION_COLUMNS,
    TRUTH_CUSTOMER_COLUMNS,
    TRUTH_DUPLICATE_COLUMNS,
)
from pipelines.sample.plan import _Chunk, _Plan, _text
from pipelines.sample.transactions import _transactions

# ---------------------------------------------------------------------------
# Public API.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationReport:
    """What `generate_sample` wrote.

    Attributes
    ----------
    out_dir : the output folder.
    paths : file role -> path written. Roles: transactions, customers, events,
        truth_params, truth_customers, truth_duplicates.
    rows : file role -> data rows written (header excluded); every role but truth_params.
    customers : buying people simulated (the `customers` argument).
    prospects : extra people with a customer record and no order.
    duplicate_records : second customer records of an already known person.
    completed_orders : completed orders, i.e. the BG/NBD purchases.
    """

    out_dir: Path
    paths: Mapping[str, Path]
    rows: Mapping[str, int]
    customers: int
    prospects: int
    duplicate_records: int
    completed_orders: int


def generate_sample(
    out_dir: Path,
    customers: int,
    seed: int = 42,
    start: date = date(2023, 1, 1),
    end: date = date(2025, 12, 31),
    progress: bool = True,
) -> GenerationReport:
    """Write synthetic shop exports and the ground truth behind them into `out_dir`.

    Parameters
    ----------
    out_dir : folder to write to; created if missing, files of the same name are replaced.
    customers : number of BUYING people (the BG/NBD population). On top come ~10%
        prospects (people who never order) and ~2% duplicate customer records, so
        customers.csv holds about 1.12 x `customers` rows.
    seed : random seed; the same arguments give byte-identical files.
    start, end : observation window, both days inclusive, UTC. Nothing is dated after
        `end` 23:59:59.
    progress : show a tqdm progress bar (people done) on stderr.

    Returns
    -------
    GenerationReport: the paths written and their row counts.

    Files (source-system column names; see the module docstring for the process)
    -----
    transactions.csv : one row per order line; returns are separate `R<InvoiceNo>` invoices.
    customers.csv : one row per customer record (a person may have two).
    events.jsonl : one behaviour event per line.
    truth/params.json : true BG/NBD (alpha in days) and Gamma-Gamma parameters, the window.
    truth/customers.csv : one row per real person: ids, latent lambda (per day), p, nu, dates.
    truth/duplicates.csv : one row per customer record: the person it belongs to.
    """
    if isinstance(customers, bool) or not isinstance(customers, numbers.Integral) or customers < 1:
        raise ValueError(f"customers must be a positive integer, got {customers!r}")
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    plan = _Plan.build(int(customers), start, end)
    out_dir = Path(out_dir)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "transactions": out_dir / "transactions.csv",
        "customers": out_dir / "customers.csv",
        "events": out_dir / "events.jsonl",
        "truth_params": truth_dir / "params.json",
        "truth_customers": truth_dir / "customers.csv",
        "truth_duplicates": truth_dir / "duplicates.csv",
    }
    tabular = ("transactions", "customers", "events", "truth_customers", "truth_duplicates")
    rows = dict.fromkeys(tabular, 0)
    invoices = completed = 0
    streams = np.random.SeedSequence(seed).spawn(len(plan.chunks) + 1)
    catalogue = _build_catalogue(np.random.default_rng(streams[0]))
    files: dict[str, BinaryIO] = {}
    try:
        for name in tabular:
            files[name] = open(paths[name], "wb")  # noqa: SIM115 - closed below
        with tqdm(
            total=plan.persons,
            unit="person",
            desc="generate-sample",
            file=sys.stderr,
            disable=not progress,
        ) as bar:
            for stream, chunk in zip(streams[1:], plan.chunks, strict=True):
                tables = _generate_chunk(
                    plan,
                    chunk,
                    catalogue,
                    np.random.default_rng(stream),
                    invoice_offset=invoices,
                    event_offset=rows["events"],
                )
                for name in tabular:
                    _append(
                        files[name], tables[name], header=chunk.index == 0, jsonl=name == "events"
                    )
                    rows[name] += tables[name].height
                invoices += tables["invoices"]
                completed += tables["completed_orders"]
                bar.update(chunk.buyers + chunk.prospects)
    finally:
        for handle in files.values():
            handle.close()
    paths["truth_params"].write_text(
        json.dumps(_params(plan, seed), indent=2) + "\n", encoding="utf-8"
    )
    return GenerationReport(
        out_dir=out_dir,
        paths=paths,
        rows=rows,
        customers=plan.customers,
        prospects=plan.prospects,
        duplicate_records=plan.duplicates,
        completed_orders=completed,
    )


def _append(handle: BinaryIO, frame: pl.DataFrame, header: bool, jsonl: bool) -> None:
    if jsonl:
        # One pre-rendered JSON text column: written raw, one per line.
        frame.write_csv(handle, include_header=False, quote_style="never")
    else:
        # float_precision=2: the only float columns written are prices (cents); the truth's
        # latent rates are written as text by `_truth`.
        frame.write_csv(
            handle, include_header=header, datetime_format=_TS_FORMAT, float_precision=2
        )


def _params(plan: _Plan, seed: int) -> dict:
    return {
        "seed": seed,
        "customers": plan.customers,
        "prospects": plan.prospects,
        "duplicate_records": plan.duplicates,
        "start": plan.start.isoformat(),
        "end": plan.end.isoformat(),
        "observation_end": f"{date.fromordinal(plan.end.toordinal() + 1).isoformat()}T00:00:00Z",
        "time_unit": "D",
        "bgnbd": {"r": BGNBD_R, "alpha": BGNBD_ALPHA_DAYS, "a": BGNBD_A, "b": BGNBD_B},
        "gamma_gamma": {"p": GG_P, "q": GG_Q, "gamma": GG_GAMMA},
        "mean_order_value": GG_P * GG_GAMMA / (GG_Q - 1.0),
        "currency": "EUR",
        "fx_rates_per_eur": FX_RATES_PER_EUR,
        "birth_window_share": BIRTH_WINDOW_SHARE,
        "shares": {
            "prospects": PROSPECT_SHARE,
            "duplicate_records": DUPLICATE_SHARE,
            "cancelled_orders": CANCELLED_SHARE,
            "refunded_orders": REFUNDED_SHARE,
            "returned_orders": RETURN_SHARE,
            "foreign_currency_orders_gb_ch_us": FOREIGN_CURRENCY_SHARE,
        },
        "events": {
            "rate_per_purchase_rate": EVENT_RATE_PER_PURCHASE_RATE,
            "fade_days": list(FADE_DAYS),
            "fade_floor": FADE_FLOOR,
            "after_dropout_rate_share": AFTER_DROPOUT_RATE_SHARE,
        },
    }


def _build_catalogue(rng: np.random.Generator) -> tuple[pl.Series, np.ndarray]:
    """Stock codes like '85123' or '85123A', and the cumulative popularity (Zipf-like)."""
    numbers = rng.choice(np.arange(10000, 100000), size=CATALOGUE_SIZE, replace=False)
    letters = rng.choice(np.array(list("ABCDEFGHKLMNPRSW"), dtype=object), CATALOGUE_SIZE)
    codes = numbers.astype(str).astype(object) + np.where(
        rng.random(CATALOGUE_SIZE) < 0.12, letters, ""
    )
    weights = 1.0 / np.arange(1, CATALOGUE_SIZE + 1) ** 1.05
    return _text(codes.tolist()), np.cumsum(weights) / weights.sum()


# ---------------------------------------------------------------------------
# One chunk of people.
# ---------------------------------------------------------------------------


def _generate_chunk(
    plan: _Plan,
    chunk: _Chunk,
    catalogue: tuple[pl.Series, np.ndarray],
    rng: np.random.Generator,
    invoice_offset: int,
    event_offset: int,
) -> dict:
    """All output rows of one chunk of people, as polars frames keyed by file role.

    The steps draw from `rng` in this order; changing it changes the files for a seed.
    """
    n_persons = chunk.buyers + chunk.prospects
    buyers = _draw_buyers(rng, chunk.buyers, plan.horizon_days)
    signup = _draw_signups(rng, chunk, buyers.birth, plan.horizon_days)
    dups = _draw_duplicates(rng, chunk, buyers, plan.horizon_days)
    rec_ids = _customer_ids(chunk, signup, dups.signup)
    orders = _draw_orders(rng, plan, buyers, dups, n_persons, invoice_offset)
    country, o_channel, o_payment, o_currency = _draw_habits(rng, orders, n_persons)
    transactions = _transactions(
        rng, plan, orders, o_channel, o_payment, o_currency, catalogue, rec_ids
    )
    events = _events(rng, plan, chunk, buyers, signup, dups, rec_ids, event_offset)
    customers = _customer_records(
        rng, plan, chunk, country, signup, dups.person, dups.kind_email, dups.signup, rec_ids
    )
    truth_customers, truth_duplicates = _truth(plan, chunk, buyers, dups, rec_ids)
    return {
        "transactions": transactions.select(TRANSACTION_COLUMNS),
        "customers": customers.select(CUSTOMER_COLUMNS),
        "events": events,
        "truth_customers": truth_customers.select(TRUTH_CUSTOMER_COLUMNS),
        "truth_duplicates": truth_duplicates.select(TRUTH_DUPLICATE_COLUMNS).sort("customer_id"),
        "invoices": orders.owner.size,
        "completed_orders": int((orders.status == _COMPLETED).sum()),
    }
