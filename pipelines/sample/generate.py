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

from pipelines.sample.countries import (
    _COUNTRY_CURRENCY,
    _COUNTRY_WEIGHTS,
    _CURRENCIES,
    _CURRENCY_RATE,
)
from pipelines.sample.customers import _customer_records
from pipelines.sample.events import _event_lines, _simulate_events
from pipelines.sample.orders import _simulate_purchases, _split_order_values
from pipelines.sample.parameters import (
    _CANCELLED,
    _COMPLETED,
    _REFUNDED,
    _RETURNED,
    _STATUSES,
    _TS_FORMAT,
    AFTER_DROPOUT_RATE_SHARE,
    BGNBD_A,
    BGNBD_ALPHA_DAYS,
    BGNBD_B,
    BGNBD_R,
    BIRTH_WINDOW_SHARE,
    CANCELLED_SHARE,
    CATALOGUE_SIZE,
    CHANNEL_PROBS,
    CHANNELS,
    CUSTOMER_COLUMNS,
    CUSTOMER_ID_WIDTH,
    DUPLICATE_SHARE,
    EVENT_RATE_PER_PURCHASE_RATE,
    FADE_DAYS,
    FADE_FLOOR,
    FOREIGN_CURRENCY_SHARE,
    FX_RATES_PER_EUR,
    GG_GAMMA,
    GG_P,
    GG_Q,
    INVOICE_BASE,
    PAYMENT_METHODS,
    PAYMENT_PROBS,
    PREFERRED_CHANNEL_SHARE,
    PREFERRED_PAYMENT_SHARE,
    PROSPECT_SHARE,
    REFUNDED_SHARE,
    RETURN_DELAY_DAYS,
    RETURN_SHARE,
    TRANSACTION_COLUMNS,
    TRUTH_CUSTOMER_COLUMNS,
    TRUTH_DUPLICATE_COLUMNS,
)
from pipelines.sample.plan import (
    _Chunk,
    _draw,
    _first_index,
    _Plan,
    _text,
    _timestamps,
    _to_epoch,
)

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


@dataclass(frozen=True)
class _Buyers:
    """A chunk's buyers: BG/NBD and Gamma-Gamma latent values and the completed orders."""

    lam: np.ndarray  # per buyer: purchases per day while alive
    p_drop: np.ndarray
    nu: np.ndarray
    birth: np.ndarray  # first purchase, days since start
    owner: np.ndarray  # per completed order, sorted by owner then time
    t_buy: np.ndarray
    dropout_t: np.ndarray  # per buyer; NaN: alive at the end
    n_completed: np.ndarray  # per buyer
    first_buy: np.ndarray  # per buyer: index of the first completed order
    rank_in_person: np.ndarray  # per completed order: 0 for the buyer's first
    value: np.ndarray  # per completed order, EUR cents


@dataclass(frozen=True)
class _Duplicates:
    """Second registrations of some buyers; the `_pad` arrays and `of` (per person, the
    index of the second record) have one padding entry, index nd, that matches nobody."""

    person: np.ndarray
    kind_email: np.ndarray  # else recognisable by phone + name
    of: np.ndarray
    signup: np.ndarray
    switch_rank_pad: np.ndarray
    signup_pad: np.ndarray


@dataclass(frozen=True)
class _Orders:
    """Every order of a chunk (completed, cancelled, refunded) in invoice order."""

    owner: np.ndarray
    t: np.ndarray
    status: np.ndarray
    value: np.ndarray  # EUR cents
    record: np.ndarray  # index of the customer record the order is placed under
    epoch: np.ndarray
    invoice: np.ndarray


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


def _draw_buyers(rng: np.random.Generator, nb: int, horizon: float) -> _Buyers:
    """BG/NBD and Gamma-Gamma latent values, and the completed orders."""
    lam = rng.gamma(BGNBD_R, 1.0 / BGNBD_ALPHA_DAYS, nb)
    p_drop = rng.beta(BGNBD_A, BGNBD_B, nb)
    nu = rng.gamma(GG_Q, 1.0 / GG_GAMMA, nb)
    birth = rng.uniform(0.0, BIRTH_WINDOW_SHARE * horizon, nb)
    owner, t_buy, dropout_t = _simulate_purchases(rng, lam, p_drop, birth, horizon)
    n_completed = np.bincount(owner, minlength=nb)
    first_buy = _first_index(np.arange(nb), n_completed)
    rank_in_person = np.arange(owner.size) - first_buy[owner]
    value = np.maximum(np.round(rng.gamma(GG_P, 1.0 / nu[owner]) * 100.0), 1).astype(np.int64)
    return _Buyers(
        lam,
        p_drop,
        nu,
        birth,
        owner,
        t_buy,
        dropout_t,
        n_completed,
        first_buy,
        rank_in_person,
        value,
    )


def _draw_signups(
    rng: np.random.Generator, chunk: _Chunk, birth: np.ndarray, horizon: float
) -> np.ndarray:
    """Signups: buyers register shortly, or a few weeks, before their first order."""
    nb = chunk.buyers
    signup = np.empty(nb + chunk.prospects)
    early = rng.random(nb) < 0.6
    signup[:nb] = (
        birth - rng.uniform(0.001, 0.02, nb) - np.where(early, rng.exponential(20.0, nb), 0.0)
    )
    signup[nb:] = rng.uniform(0.0, horizon, chunk.prospects)
    return signup


def _draw_duplicates(
    rng: np.random.Generator, chunk: _Chunk, buyers: _Buyers, horizon: float
) -> _Duplicates:
    """Second registrations of some buyers."""
    nb, nd = chunk.buyers, chunk.duplicates
    n_completed, t_buy, first_buy, birth = (
        buyers.n_completed,
        buyers.t_buy,
        buyers.first_buy,
        buyers.birth,
    )
    # People with repeat orders register again just before one of them, so some of their
    # orders carry the second id; one-order people register again at some later time.
    # Arrays over duplicates get one padding entry (index nd) that matches nobody.
    dup_person = np.sort(rng.choice(nb, nd, replace=False)).astype(np.int64)
    dup_kind_email = rng.random(nd) < 0.5  # else recognisable by phone + name
    dup_of = np.full(nb + chunk.prospects, nd)
    dup_of[dup_person] = np.arange(nd)
    n_dup_orders = n_completed[dup_person]
    switch_rank = np.where(
        n_dup_orders >= 2, 1 + np.floor(rng.random(nd) * (n_dup_orders - 1)).astype(np.int64), -1
    )
    switch_t = t_buy[first_buy[dup_person] + np.maximum(switch_rank, 0)]
    dup_signup = np.where(
        switch_rank > 0,
        switch_t - rng.uniform(0.001, 0.02, nd),
        birth[dup_person] + rng.random(nd) * (horizon - birth[dup_person]),
    )
    switch_rank_pad = np.append(switch_rank, -2)
    dup_signup_pad = np.append(dup_signup, np.inf)
    return _Duplicates(
        dup_person, dup_kind_email, dup_of, dup_signup, switch_rank_pad, dup_signup_pad
    )


def _customer_ids(chunk: _Chunk, signup: np.ndarray, dup_signup: np.ndarray) -> pl.Series:
    """CustomerIDs: a block per chunk, in order of signup within it."""
    rec_signup = np.concatenate([signup, dup_signup])
    id_rank = np.empty(rec_signup.size, dtype=np.int64)
    id_rank[np.argsort(rec_signup, kind="stable")] = np.arange(rec_signup.size)
    return pl.Series(chunk.first_record + 1 + id_rank).cast(pl.String).str.zfill(CUSTOMER_ID_WIDTH)


def _draw_orders(
    rng: np.random.Generator,
    plan: _Plan,
    buyers: _Buyers,
    dups: _Duplicates,
    n_persons: int,
    invoice_offset: int,
) -> _Orders:
    """The completed orders plus cancelled and refunded ones, each under the record of
    the person's first or second registration, numbered by time."""
    horizon = plan.horizon_days
    owner, t_buy, nu, value = buyers.owner, buyers.t_buy, buyers.nu, buyers.value
    n_comp = owner.size
    # --- cancelled and refunded orders come on top of the completed ones -------------
    # A cancelled order follows the order it belongs with by minutes to hours, a refunded
    # one by up to a few days.
    cancel = rng.random(n_comp) < CANCELLED_SHARE
    refund = rng.random(n_comp) < REFUNDED_SHARE
    o_owner = np.concatenate([owner, owner[cancel], owner[refund]])
    o_t = np.concatenate(
        [
            t_buy,
            t_buy[cancel] + rng.uniform(0.003, 0.1, cancel.sum()),
            t_buy[refund] + rng.uniform(0.02, 3.0, refund.sum()),
        ]
    )
    o_status = np.concatenate(
        [
            np.full(n_comp, _COMPLETED),
            np.full(cancel.sum(), _CANCELLED),
            np.full(refund.sum(), _REFUNDED),
        ]
    )
    extra_value = np.round(rng.gamma(GG_P, 1.0 / nu[o_owner[n_comp:]]) * 100.0)
    o_value = np.concatenate([value, np.maximum(extra_value, 1).astype(np.int64)])
    o_dup = dups.of[o_owner]
    is_switch = np.zeros(o_owner.size, bool)
    is_switch[:n_comp] = buyers.rank_in_person == dups.switch_rank_pad[o_dup[:n_comp]]
    on_dup = (o_t >= dups.signup_pad[o_dup]) & ((rng.random(o_owner.size) < 0.7) | is_switch)
    o_record = np.where(on_dup, n_persons + o_dup, o_owner)
    keep = o_t < horizon
    o_epoch = _to_epoch(plan, o_t)
    # Invoice numbers follow time within the chunk.
    o_sort = np.flatnonzero(keep)[np.lexsort((o_owner[keep], o_epoch[keep]))]
    o_owner, o_t, o_status, o_value, o_record, o_epoch = (
        x[o_sort] for x in (o_owner, o_t, o_status, o_value, o_record, o_epoch)
    )
    n_orders = o_owner.size
    o_invoice = INVOICE_BASE + invoice_offset + 1 + np.arange(n_orders)
    return _Orders(o_owner, o_t, o_status, o_value, o_record, o_epoch, o_invoice)


def _draw_habits(
    rng: np.random.Generator, orders: _Orders, n_persons: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Habits and currency: each person's country; each order's channel, payment
    method and currency (indices)."""
    o_owner, n_orders = orders.owner, orders.owner.size
    country = _draw(rng, _COUNTRY_WEIGHTS, n_persons)
    pref_channel = _draw(rng, CHANNEL_PROBS, n_persons)
    pref_payment = _draw(rng, PAYMENT_PROBS, n_persons)
    o_channel = np.where(
        rng.random(n_orders) < PREFERRED_CHANNEL_SHARE,
        pref_channel[o_owner],
        _draw(rng, CHANNEL_PROBS, n_orders),
    )
    o_payment = np.where(
        rng.random(n_orders) < PREFERRED_PAYMENT_SHARE,
        pref_payment[o_owner],
        _draw(rng, PAYMENT_PROBS, n_orders),
    )
    local = _COUNTRY_CURRENCY[country[o_owner]]
    o_currency = np.where((local > 0) & (rng.random(n_orders) < FOREIGN_CURRENCY_SHARE), local, 0)
    return country, o_channel, o_payment, o_currency


def _transactions(
    rng: np.random.Generator,
    plan: _Plan,
    orders: _Orders,
    o_channel: np.ndarray,
    o_payment: np.ndarray,
    o_currency: np.ndarray,
    catalogue: tuple[pl.Series, np.ndarray],
    rec_ids: pl.Series,
) -> pl.DataFrame:
    """transactions.csv rows of one chunk: the order lines and the returns, by date."""
    horizon, n_orders = plan.horizon_days, orders.owner.size
    o_t, o_status, o_record, o_epoch, o_invoice = (
        orders.t,
        orders.status,
        orders.record,
        orders.epoch,
        orders.invoice,
    )
    o_amount = np.maximum(np.round(orders.value * _CURRENCY_RATE[o_currency]), 1).astype(np.int64)
    l_order, l_no, l_qty, l_price = _split_order_values(rng, o_amount)
    codes, code_cdf = catalogue
    l_code = np.searchsorted(code_cdf, rng.random(l_order.size) * (1 - 1e-12), side="right")

    # --- returns: some lines of some completed orders, days later --------------------
    ret_t = o_t + rng.uniform(*RETURN_DELAY_DAYS, n_orders)
    returned = (o_status == _COMPLETED) & (rng.random(n_orders) < RETURN_SHARE) & (ret_t < horizon)
    pick = returned[l_order] & (rng.random(l_order.size) < 0.6)
    none_picked = returned & (np.bincount(l_order, pick, minlength=n_orders) == 0)
    pick |= none_picked[l_order] & (l_no == 1)
    r_line = np.flatnonzero(pick)
    r_order = l_order[r_line]
    r_qty = -(1 + np.floor(rng.random(r_line.size) * l_qty[r_line]).astype(np.int64))
    _, r_group, r_count = np.unique(r_order, return_inverse=True, return_counts=True)
    r_no = np.arange(r_line.size) - _first_index(r_group, r_count) + 1

    invoice_text = pl.Series(o_invoice).cast(pl.String)
    lines = _transaction_frame(
        invoice=invoice_text.gather(l_order),
        line_no=l_no,
        customer=rec_ids.gather(o_record[l_order]),
        epoch=o_epoch[l_order],
        code=codes.gather(l_code),
        qty=l_qty,
        price=l_price,
        currency=o_currency[l_order],
        channel=o_channel[l_order],
        payment=o_payment[l_order],
        status=o_status[l_order],
        sort_key=o_invoice[l_order],
    )
    returns = _transaction_frame(
        invoice="R" + invoice_text.gather(r_order),
        line_no=r_no,
        customer=rec_ids.gather(o_record[r_order]),
        epoch=_to_epoch(plan, ret_t[r_order]),
        code=codes.gather(l_code[r_line]),
        qty=r_qty,
        price=l_price[r_line],
        currency=o_currency[r_order],
        channel=o_channel[r_order],
        payment=o_payment[r_order],
        status=np.full(r_line.size, _RETURNED),
        sort_key=o_invoice[r_order] + 10**12,
    )
    return pl.concat([lines, returns]).sort(["InvoiceDate", "_sort", "LineNo"]).drop("_sort")


def _events(
    rng: np.random.Generator,
    plan: _Plan,
    chunk: _Chunk,
    buyers: _Buyers,
    signup: np.ndarray,
    dups: _Duplicates,
    rec_ids: pl.Series,
    event_offset: int,
) -> pl.DataFrame:
    """events.jsonl lines of one chunk; after a second registration, half of a person's
    events carry the second id."""
    nb = chunk.buyers
    n_persons = nb + chunk.prospects
    e_owner, e_t, e_phase = _simulate_events(
        rng, plan, buyers.lam, signup, buyers.dropout_t, nb, n_persons
    )
    e_dup = dups.of[e_owner]
    e_on_dup = (e_t >= dups.signup_pad[e_dup]) & (rng.random(e_owner.size) < 0.5)
    e_record = np.where(e_on_dup, n_persons + e_dup, e_owner)
    return _event_lines(rng, plan, e_t, e_phase, rec_ids.gather(e_record), event_offset)


def _truth(
    plan: _Plan, chunk: _Chunk, buyers: _Buyers, dups: _Duplicates, rec_ids: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The truth of one chunk: one row per person, and the person of every record."""
    nb, nd = chunk.buyers, chunk.duplicates
    n_persons = nb + chunk.prospects
    dup_person = dups.person
    person_ids = "P" + pl.Series(chunk.first_person + 1 + np.arange(n_persons)).cast(
        pl.String
    ).str.zfill(8)
    truth_ids = rec_ids.head(n_persons)
    if nd:
        truth_ids = truth_ids.scatter(
            dup_person, truth_ids.gather(dup_person) + "|" + rec_ids.tail(nd)
        )
    no_value = np.full(chunk.prospects, np.nan)
    truth_customers = pl.DataFrame(
        {
            "person_id": person_ids,
            "customer_ids": truth_ids,
            # Text with full precision, so float_precision=2 of the CSV writer does not apply.
            "lambda_per_day": _float_text(np.concatenate([buyers.lam, no_value])),
            "p_dropout": _float_text(np.concatenate([buyers.p_drop, no_value])),
            "nu": _float_text(np.concatenate([buyers.nu, no_value])),
            "first_purchase_at": _timestamps(plan, np.concatenate([buyers.birth, no_value])),
            "dropout_at": _timestamps(plan, np.concatenate([buyers.dropout_t, no_value])),
            "is_prospect": np.arange(n_persons) >= nb,
            "completed_orders": np.concatenate(
                [buyers.n_completed, np.zeros(chunk.prospects, np.int64)]
            ),
        }
    )
    rec_person = np.concatenate([np.arange(n_persons), dup_person])
    truth_duplicates = pl.DataFrame(
        {"customer_id": rec_ids, "person_id": person_ids.gather(rec_person)}
    )
    return truth_customers, truth_duplicates


def _float_text(values: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.Float64).fill_nan(None).cast(pl.String)


def _transaction_frame(
    *,
    invoice: pl.Series,
    line_no,
    customer: pl.Series,
    epoch,
    code: pl.Series,
    qty,
    price,
    currency,
    channel,
    payment,
    status,
    sort_key,
) -> pl.DataFrame:
    """transactions.csv rows (plus a `_sort` key) from per-line arrays."""
    return pl.DataFrame(
        {
            "InvoiceNo": invoice,
            "LineNo": pl.Series(line_no, dtype=pl.Int64),
            "CustomerID": customer,
            "InvoiceDate": pl.from_epoch(pl.Series(epoch, dtype=pl.Int64), time_unit="s"),
            "StockCode": code,
            "Quantity": pl.Series(qty, dtype=pl.Int64),
            "UnitPrice": pl.Series(price, dtype=pl.Int64) / 100.0,
            "Currency": pl.Series(_CURRENCIES).gather(currency),
            "Channel": pl.Series(CHANNELS).gather(channel),
            "PaymentMethod": pl.Series(PAYMENT_METHODS).gather(payment),
            "Status": pl.Series(_STATUSES).gather(status),
            "_sort": pl.Series(sort_key, dtype=pl.Int64),
        }
    )
