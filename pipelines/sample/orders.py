"""The purchases and order lines: completed orders drawn from the BG/NBD process, and an
order's value split into lines whose quantity x price sums to the cent.
"""

from __future__ import annotations

import numpy as np

from pipelines.sample.parameters import (
    LINE_QUANTITIES,
    LINE_QUANTITY_PROBS,
    LINES_PER_ORDER_PROBS,
    MIN_SPLIT_CENTS,
)
from pipelines.sample.plan import _draw, _first_index


def _simulate_purchases(
    rng: np.random.Generator, lam: np.ndarray, p: np.ndarray, birth: np.ndarray, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD purchase times in days, in rounds over the customers still alive.

    Returns (owner, t, dropout_t): one entry per purchase sorted by owner then time, and
    per customer the time of the purchase after which they dropped out (NaN: alive at end).
    """
    owners, times = [np.arange(lam.size)], [birth]
    dropout_t = np.full(lam.size, np.nan)
    active, t = np.arange(lam.size), birth.copy()
    while active.size:
        t_next = t[active] + rng.exponential(1.0, active.size) / lam[active]
        keep = t_next < horizon
        active, t_next = active[keep], t_next[keep]
        t[active] = t_next
        owners.append(active)
        times.append(t_next)
        # Dropout only after repeat purchases (Fader, Hardie & Lee 2005, assumption iv):
        # the BG/NBD likelihood of x = 0 repeat purchases, exp(-lambda T), has no dropout.
        drop = rng.random(active.size) < p[active]
        dropout_t[active[drop]] = t_next[drop]
        active = active[~drop]
    owner, t_all = np.concatenate(owners), np.concatenate(times)
    order = np.lexsort((t_all, owner))
    return owner[order], t_all[order], dropout_t


def _split_order_values(
    rng: np.random.Generator, cents: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split order values (integer cents) into 1-4 lines whose quantity x price sums exactly.

    Returns (order_index, line_no, quantity, unit_price_cents), one entry per line; the
    lines of an order are adjacent and numbered 1..n in random order.
    """
    n_orders = cents.size
    n_lines = 1 + _draw(rng, LINES_PER_ORDER_PROBS, n_orders)
    n_lines = np.where(cents < MIN_SPLIT_CENTS, 1, n_lines)
    order = np.repeat(np.arange(n_orders), n_lines)
    position = np.arange(order.size) - _first_index(order, n_lines)
    last = position == n_lines[order] - 1
    # Dirichlet shares, floored at half an equal share so no line gets a token price.
    weight = rng.gamma(2.0, 1.0, order.size)
    share = (
        0.5 / n_lines[order] + 0.5 * weight / np.bincount(order, weight, minlength=n_orders)[order]
    )
    qty = np.asarray(LINE_QUANTITIES)[_draw(rng, LINE_QUANTITY_PROBS, order.size)]
    # The last line takes the remainder at quantity 1, so the lines sum to the cent; it is
    # at least its own share (>= 62 cents), since the others round down.
    qty = np.where(last, 1, qty)
    price = np.floor(share * cents[order] / qty).astype(np.int64)
    others = np.bincount(order, np.where(last, 0, qty * price), minlength=n_orders)
    price = np.where(last, cents[order] - np.round(others[order]).astype(np.int64), price)
    # Random line numbers, so the quantity-1 remainder line is not always the last one.
    shuffled = np.lexsort((rng.random(order.size), order))
    line_no = np.empty(order.size, dtype=np.int64)
    line_no[shuffled] = position + 1
    return order, line_no, qty, price
