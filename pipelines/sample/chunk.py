"""The draws for one chunk of people: buyers with their BG/NBD and Gamma-Gamma latent
values and completed orders, signups, second registrations (duplicate records), customer
ids, every order with the record it is placed under, habits and currencies, events, and
the ground truth of the chunk.

:func:`pipelines.sample.generate._generate_chunk` calls them in a fixed order on the
chunk's random stream; the transactions.csv rows are built in
:mod:`pipelines.sample.transactions`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.sample.countries import _COUNTRY_CURRENCY, _COUNTRY_WEIGHTS
from pipelines.sample.events import _event_lines, _simulate_events
from pipelines.sample.orders import _simulate_purchases
from pipelines.sample.parameters import (
    _CANCELLED,
    _COMPLETED,
    _REFUNDED,
    BGNBD_A,
    BGNBD_ALPHA_DAYS,
    BGNBD_B,
    BGNBD_R,
    BIRTH_WINDOW_SHARE,
    CANCELLED_SHARE,
    CHANNEL_PROBS,
    CUSTOMER_ID_WIDTH,
    FOREIGN_CURRENCY_SHARE,
    GG_GAMMA,
    GG_P,
    GG_Q,
    INVOICE_BASE,
    PAYMENT_PROBS,
    PREFERRED_CHANNEL_SHARE,
    PREFERRED_PAYMENT_SHARE,
    REFUNDED_SHARE,
)
from pipelines.sample.plan import _Chunk, _draw, _first_index, _Plan, _timestamps, _to_epoch


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
