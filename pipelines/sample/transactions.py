"""The transactions.csv rows of one chunk: each order split into lines of catalogue
items in the order's currency, and the returns of some lines as separate ``R<InvoiceNo>``
invoices days later, sorted by date.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.sample.chunk import _Orders
from pipelines.sample.countries import _CURRENCIES, _CURRENCY_RATE
from pipelines.sample.orders import _split_order_values
from pipelines.sample.parameters import (
    _COMPLETED,
    _RETURNED,
    _STATUSES,
    CHANNELS,
    PAYMENT_METHODS,
    RETURN_DELAY_DAYS,
    RETURN_SHARE,
)
from pipelines.sample.plan import _first_index, _Plan, _to_epoch


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
