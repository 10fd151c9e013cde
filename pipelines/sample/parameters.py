"""The parameters of the synthetic shop: the purchase process (BG/NBD, Gamma-Gamma), the
shares of everything added around it, the output columns and the time-of-day profile.

See :mod:`pipelines.sample.generate` for the process they drive.
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# Process parameters. truth/params.json records them for every run.
# ---------------------------------------------------------------------------

# BG/NBD, lambda per day. r=0.8, alpha=50 gives a mean rate of one order every ~60 days
# and, with a=0.8, b=3 (mean dropout probability 0.21), ~5.6 completed orders per
# customer over a 3-year window: 1M customers -> ~5.9M orders -> ~10M order lines.
BGNBD_R = 0.8
BGNBD_ALPHA_DAYS = 50.0
BGNBD_A = 0.8
BGNBD_B = 3.0
# Gamma-Gamma: mean order value 6 * 35 / 3 = 70 EUR, right-skewed across orders and people.
GG_P = 6.0
GG_Q = 4.0
GG_GAMMA = 35.0

# First purchases ("births") fall uniformly in this leading share of [start, end], so
# every customer has at least ~30% of the window as observed history.
BIRTH_WINDOW_SHARE = 0.7
# Extra people with a customer record but no order, per buying customer.
PROSPECT_SHARE = 0.10
# Second customer records of the same person, as a share of all people; only buyers get
# one, since their split order history is what makes a duplicate costly.
DUPLICATE_SHARE = 0.02
# Extra non-completed orders per completed order; they do not touch the BG/NBD orders.
CANCELLED_SHARE = 0.03
REFUNDED_SHARE = 0.02
# Share of completed orders that later get a return invoice.
RETURN_SHARE = 0.03
RETURN_DELAY_DAYS = (2.0, 30.0)
# Order lines per order (1..4); mean 1.69 lines.
LINES_PER_ORDER_PROBS = (0.55, 0.27, 0.12, 0.06)
# Orders below this many cents stay one line, so every line keeps a sensible price.
MIN_SPLIT_CENTS = 500
LINE_QUANTITIES = (1, 2, 3, 4, 6)
LINE_QUANTITY_PROBS = (0.72, 0.16, 0.06, 0.03, 0.03)
CATALOGUE_SIZE = 4000

# Share of orders of GB/CH/US customers paid in their own currency. Their amounts are
# the EUR order value converted at these fixed rates (recorded in truth/params.json).
FOREIGN_CURRENCY_SHARE = 0.10
FX_RATES_PER_EUR = {"GBP": 0.85, "CHF": 0.95, "USD": 1.08}

CHANNELS = ("web", "app", "store")
CHANNEL_PROBS = (0.55, 0.30, 0.15)
PAYMENT_METHODS = ("card", "paypal", "invoice")
PAYMENT_PROBS = (0.50, 0.35, 0.15)
# People stick to their habits: most orders use the person's preferred channel/payment.
PREFERRED_CHANNEL_SHARE = 0.75
PREFERRED_PAYMENT_SHARE = 0.80

# Events per day = EVENT_RATE_PER_PURCHASE_RATE * lambda while engaged: ~15 events per
# buying customer on average (1M customers -> ~15M events).
EVENT_RATE_PER_PURCHASE_RATE = 3.2
# Engagement fades linearly to FADE_FLOOR over this many days before the dropout ...
FADE_DAYS = (60.0, 120.0)
FADE_FLOOR = 0.10
# ... and is near zero afterwards (the odd newsletter still gets opened).
AFTER_DROPOUT_RATE_SHARE = 0.03
# Prospects: page views and e-mail opens right after signup, waning with interest.
PROSPECT_EVENT_RATE_PER_DAY = 0.08
PROSPECT_INTEREST_DAYS = 60.0
NPS_SHARE_OF_SURVEYS = 0.6

MARKETING_OPT_IN_SHARE = 0.60
BIRTH_DATE_MISSING_SHARE = 0.12
EMAIL_MISSING_SHARE = 0.02
PHONE_MISSING_SHARE = 0.15

# Generation works on this many people at a time; the output depends on it (it fixes
# the random streams), so changing it changes the files for a given seed.
CHUNK_PERSONS = 100_000
CUSTOMER_ID_WIDTH = 7
INVOICE_BASE = 1_000_000

TRANSACTION_COLUMNS = (
    "InvoiceNo",
    "LineNo",
    "CustomerID",
    "InvoiceDate",
    "StockCode",
    "Quantity",
    "UnitPrice",
    "Currency",
    "Channel",
    "PaymentMethod",
    "Status",
)
CUSTOMER_COLUMNS = (
    "CustomerID",
    "Email",
    "Phone",
    "FullName",
    "BirthDate",
    "Gender",
    "City",
    "Country",
    "SignupDate",
    "MarketingOptIn",
    "UpdatedAt",
)
EVENT_KEYS = ("id", "user", "timestamp", "event", "channel", "score", "props")
TRUTH_CUSTOMER_COLUMNS = (
    "person_id",
    "customer_ids",
    "lambda_per_day",
    "p_dropout",
    "nu",
    "first_purchase_at",
    "dropout_at",
    "is_prospect",
    "completed_orders",
)
TRUTH_DUPLICATE_COLUMNS = ("customer_id", "person_id")

_TS_FORMAT = "%Y-%m-%d %H:%M:%S"
_STATUSES = ("completed", "cancelled", "refunded", "returned")
_COMPLETED, _CANCELLED, _REFUNDED, _RETURNED = range(4)

# Online shop traffic by UTC hour (quiet nights, lunch and evening peaks). Purchases and
# events are drawn in "operational" time and mapped into each day through this profile:
# a monotone time change within the day, so the BG/NBD process stays exact at day
# resolution (the time unit the models use) while timestamps get a realistic time of day.
_HOURLY_TRAFFIC = np.array(
    [
        0.30,
        0.18,
        0.12,
        0.10,
        0.10,
        0.15,
        0.30,
        0.55,
        0.85,
        1.05,
        1.15,
        1.25,
        1.40,
        1.30,
        1.15,
        1.10,
        1.15,
        1.30,
        1.55,
        1.80,
        1.95,
        1.75,
        1.20,
        0.65,
    ]
)
_DAY_SHARE_KNOTS = np.concatenate([[0.0], np.cumsum(_HOURLY_TRAFFIC) / _HOURLY_TRAFFIC.sum()])
_HOUR_KNOTS = np.arange(25) / 24.0
