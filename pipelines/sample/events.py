"""The synthetic behaviour events: web, e-mail, support and survey events whose intensity
follows each person's purchase rate and fades before a dropout, written as JSON lines.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl

from pipelines.sample.parameters import (
    AFTER_DROPOUT_RATE_SHARE,
    EVENT_KEYS,
    EVENT_RATE_PER_PURCHASE_RATE,
    FADE_DAYS,
    FADE_FLOOR,
    NPS_SHARE_OF_SURVEYS,
    PROSPECT_EVENT_RATE_PER_DAY,
    PROSPECT_INTEREST_DAYS,
)
from pipelines.sample.plan import _draw, _draw_rows, _Plan, _to_epoch

_EVENT_TYPES = (
    "page_view",
    "email_open",
    "email_click",
    "support_ticket",
    "complaint",
    "survey_response",
)
_PAGE_VIEW, _EMAIL_OPEN, _EMAIL_CLICK, _TICKET, _COMPLAINT, _SURVEY = range(6)
# Event mix per engagement phase: engaged, fading (the run-up to a dropout: more
# tickets, complaints and surveys, which score low), lapsed (after dropout), prospect.
_PHASE_ENGAGED, _PHASE_FADING, _PHASE_LAPSED, _PHASE_PROSPECT = range(4)
_EVENT_MIX = np.array(
    [
        [0.62, 0.22, 0.07, 0.025, 0.005, 0.06],
        [0.50, 0.18, 0.04, 0.11, 0.06, 0.11],
        [0.30, 0.60, 0.04, 0.02, 0.02, 0.02],
        [0.60, 0.35, 0.05, 0.00, 0.00, 0.00],
    ]
)
_NPS_PROBS = {
    False: [0.01, 0.01, 0.01, 0.02, 0.02, 0.04, 0.05, 0.12, 0.22, 0.25, 0.25],
    True: [0.08, 0.06, 0.08, 0.10, 0.10, 0.12, 0.12, 0.10, 0.10, 0.07, 0.07],
}
_CSAT_PROBS = {False: [0.03, 0.05, 0.12, 0.35, 0.45], True: [0.20, 0.22, 0.25, 0.20, 0.13]}
# First-response time of support tickets in hours: lognormal(log median, sigma).
_TICKET_HOURS = {False: (math.log(4.0), 0.9), True: (math.log(14.0), 1.0)}
_TICKET_TOPICS = ("delivery", "payment", "product", "return", "account")
_COMPLAINT_TOPICS = ("delivery", "product_quality", "billing", "service")
_CAMPAIGNS = ("newsletter", "promotion", "winback", "reorder_reminder")
_EVENT_CHANNELS = ("web", "app", "email", "phone", "chat", "store")
# Channel mix per event type, over _EVENT_CHANNELS.
_EVENT_CHANNEL_MIX = np.array(
    [
        [0.60, 0.40, 0.00, 0.00, 0.00, 0.00],
        [0.00, 0.00, 1.00, 0.00, 0.00, 0.00],
        [0.00, 0.00, 1.00, 0.00, 0.00, 0.00],
        [0.00, 0.00, 0.50, 0.25, 0.25, 0.00],
        [0.00, 0.00, 0.55, 0.30, 0.00, 0.15],
        [0.30, 0.10, 0.60, 0.00, 0.00, 0.00],
    ]
)


def _poisson_segments(
    rng: np.random.Generator, who: np.ndarray, t0: np.ndarray, t1: np.ndarray, rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous Poisson event times on [t0, t1) per segment: (owner, time)."""
    length = np.maximum(t1 - t0, 0.0)
    n = rng.poisson(rate * length)
    return np.repeat(who, n), np.repeat(t0, n) + rng.random(n.sum()) * np.repeat(length, n)


def _simulate_events(
    rng: np.random.Generator,
    plan: _Plan,
    lam: np.ndarray,
    signup: np.ndarray,
    dropout_t: np.ndarray,
    nb: int,
    n_persons: int,
):
    """Event (owner, time in days, phase): engagement proportional to the purchase rate."""
    horizon = plan.horizon_days
    owners, times, phases = [], [], []

    def add(who: np.ndarray, t: np.ndarray, phase: int) -> None:
        owners.append(who)
        times.append(t)
        phases.append(np.full(who.size, phase))

    buyers = np.arange(nb)
    rate = EVENT_RATE_PER_PURCHASE_RATE * lam
    ev_start = np.maximum(signup[:nb], 0.0)
    dropped = ~np.isnan(dropout_t)
    drop_t = np.where(dropped, dropout_t, horizon)
    fade_len = rng.uniform(*FADE_DAYS, nb)
    fade_start = np.where(dropped, np.maximum(drop_t - fade_len, ev_start), horizon)
    # Engaged from signup until the fade begins (to the end for customers still alive).
    add(*_poisson_segments(rng, buyers, ev_start, fade_start, rate), _PHASE_ENGAGED)
    # Fading: the intensity falls linearly to FADE_FLOOR at the dropout (by thinning).
    who, t = _poisson_segments(
        rng, buyers[dropped], fade_start[dropped], drop_t[dropped], rate[dropped]
    )
    level = 1.0 - (1.0 - FADE_FLOOR) * (t - (drop_t[who] - fade_len[who])) / fade_len[who]
    kept = rng.random(who.size) < level
    add(who[kept], t[kept], _PHASE_FADING)
    # Lapsed: near zero after the dropout.
    add(
        *_poisson_segments(
            rng,
            buyers[dropped],
            drop_t[dropped],
            np.full(dropped.sum(), horizon),
            rate[dropped] * AFTER_DROPOUT_RATE_SHARE,
        ),
        _PHASE_LAPSED,
    )
    # Prospects: interest decays exponentially after signup; exact inverse-CDF sampling.
    prospect_signup = signup[nb:]
    mass = 1.0 - np.exp(-(horizon - prospect_signup) / PROSPECT_INTEREST_DAYS)
    n = rng.poisson(PROSPECT_EVENT_RATE_PER_DAY * PROSPECT_INTEREST_DAYS * mass)
    who = np.repeat(np.arange(nb, n_persons), n)
    t = signup[who] - PROSPECT_INTEREST_DAYS * np.log1p(-rng.random(n.sum()) * mass[who - nb])
    add(who, np.minimum(t, np.nextafter(horizon, 0.0)), _PHASE_PROSPECT)
    return np.concatenate(owners), np.concatenate(times), np.concatenate(phases)


# Every props value the events use; an event stores an index into this list.
_PROPS = (
    [None]
    + [{"campaign": c} for c in _CAMPAIGNS]
    + [{"topic": t} for t in _TICKET_TOPICS]
    + [{"topic": t} for t in _COMPLAINT_TOPICS]
    + [{"survey": "nps"}, {"survey": "csat"}]
)
_PROPS_CAMPAIGN = 1
_PROPS_TICKET = _PROPS_CAMPAIGN + len(_CAMPAIGNS)
_PROPS_COMPLAINT = _PROPS_TICKET + len(_TICKET_TOPICS)
_PROPS_NPS = _PROPS_COMPLAINT + len(_COMPLAINT_TOPICS)
_PROPS_TEXT = [json.dumps(x, separators=(",", ":")) if x else "null" for x in _PROPS]


def _event_lines(
    rng: np.random.Generator,
    plan: _Plan,
    t: np.ndarray,
    phase: np.ndarray,
    user: pl.Series,
    event_offset: int,
) -> pl.DataFrame:
    """One JSON text per event (column `line`), sorted by time; ids continue from `event_offset`."""
    n = t.size
    at_risk = (phase == _PHASE_FADING) | (phase == _PHASE_LAPSED)
    kind = _draw_rows(rng, _EVENT_MIX, phase)
    channel = _draw_rows(rng, _EVENT_CHANNEL_MIX, kind)
    props = np.zeros(n, dtype=np.int64)
    score = np.full(n, np.nan)

    def topic(mask: np.ndarray, first: int, count: int) -> None:
        props[mask] = first + np.floor(rng.random(mask.sum()) * count).astype(np.int64)

    topic((kind == _EMAIL_OPEN) | (kind == _EMAIL_CLICK), _PROPS_CAMPAIGN, len(_CAMPAIGNS))
    ticket = kind == _TICKET
    topic(ticket, _PROPS_TICKET, len(_TICKET_TOPICS))
    topic(kind == _COMPLAINT, _PROPS_COMPLAINT, len(_COMPLAINT_TOPICS))
    survey = kind == _SURVEY
    nps = survey & (rng.random(n) < NPS_SHARE_OF_SURVEYS)
    csat = survey & ~nps
    props[nps], props[csat] = _PROPS_NPS, _PROPS_NPS + 1
    for risk in (False, True):
        sel = ticket & (at_risk == risk)
        score[sel] = np.round(rng.lognormal(*_TICKET_HOURS[risk], sel.sum()), 2)
        sel = nps & (at_risk == risk)
        score[sel] = _draw(rng, _NPS_PROBS[risk], sel.sum())
        sel = csat & (at_risk == risk)
        score[sel] = 1 + _draw(rng, _CSAT_PROBS[risk], sel.sum())
    epoch = _to_epoch(plan, t)
    order = np.lexsort((rng.random(n), epoch))
    score_series = pl.Series(score[order]).fill_nan(None)
    frame = pl.DataFrame(
        {
            "id": "E" + pl.Series(event_offset + 1 + np.arange(n)).cast(pl.String).str.zfill(10),
            "user": user.gather(order),
            "timestamp": pl.from_epoch(pl.Series(epoch[order]), time_unit="s").dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "event": pl.Series(_EVENT_TYPES).gather(kind[order]),
            "channel": pl.Series(_EVENT_CHANNELS).gather(channel[order]),
            # Survey scores are integers; response times keep their two decimals.
            "score": pl.Series(survey[order])
            .to_frame("s")
            .select(
                pl.when(pl.col("s"))
                .then(score_series.cast(pl.Int64).cast(pl.String))
                .otherwise(score_series.cast(pl.String))
                .fill_null("null")
            )
            .to_series(),
            "props": pl.Series(_PROPS_TEXT).gather(props[order]),
        }
    )
    # Hand-rendered JSON (the values need no escaping: ids, codes and fixed labels), which
    # is an order of magnitude faster than json.dumps per event.
    parts: list[pl.Expr] = []
    for i, key in enumerate(EVENT_KEYS):
        raw = key in ("score", "props")  # JSON numbers / objects / null, not strings
        parts.append(pl.lit(("{" if i == 0 else ",") + f'"{key}":' + ("" if raw else '"')))
        parts.append(pl.col(key))
        parts.append(pl.lit("" if raw else '"'))
    return frame.select(pl.concat_str([*parts, pl.lit("}")]).alias("line"))
