"""The synthetic customer records: one per person and a second one for some buyers, with
names, e-mail addresses, phone numbers and dates as a shop's customer export writes them.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from pipelines.sample.countries import (
    _CITIES,
    _COUNTRIES,
    _COUNTRY_CN,
    _DOMAINS,
    _FEMALE,
    _HAN_NAME_SHARE,
    _MALE,
    _N_PHONE_TEMPLATES,
    _SURNAMES,
    _phone_numbers,
    _strip_accents,
)
from pipelines.sample.parameters import (
    BIRTH_DATE_MISSING_SHARE,
    EMAIL_MISSING_SHARE,
    MARKETING_OPT_IN_SHARE,
    PHONE_MISSING_SHARE,
)
from pipelines.sample.plan import _Chunk, _draw, _Plan, _text, _to_epoch


def _customer_records(
    rng: np.random.Generator,
    plan: _Plan,
    chunk: _Chunk,
    country: np.ndarray,
    signup: np.ndarray,
    dup_person: np.ndarray,
    dup_kind_email: np.ndarray,
    dup_signup: np.ndarray,
    rec_ids: pl.Series,
) -> pl.DataFrame:
    """customers.csv rows of one chunk (every person's record, then second records), by id."""
    n, nd = country.size, dup_person.size
    # The global person index keys e-mail numbers and phone numbers: unique per person.
    key = chunk.first_person + np.arange(n)

    # Names: Chinese customers mostly in Han characters, family name first.
    gender = _draw(rng, (0.48, 0.48, 0.01, 0.03), n)  # F, M, D, missing
    female = (gender == 0) | ((gender >= 2) & (rng.random(n) < 0.5))
    first_f, first_m = _FEMALE.draw(rng, country), _MALE.draw(rng, country)
    surname = _SURNAMES.draw(rng, country)

    def first_name(field: str) -> np.ndarray:
        return np.where(female, getattr(_FEMALE, field)[first_f], getattr(_MALE, field)[first_m])

    first_latin, first_email, first_initial = (
        first_name("latin"),
        first_name("email"),
        first_name("initial"),
    )
    last_latin, last_email = _SURNAMES.latin[surname], _SURNAMES.email[surname]
    han = (country == _COUNTRY_CN) & (rng.random(n) < _HAN_NAME_SHARE)
    full_name = np.where(
        han, _SURNAMES.native[surname] + first_name("native"), first_latin + " " + last_latin
    )
    email = _email_addresses(
        first_email,
        first_initial,
        last_email,
        _DOMAINS.native[_DOMAINS.draw(rng, country, zipf=0.8)],
        np.floor(rng.random(n) * 5).astype(np.int64),
        _email_number(plan, key),
    )
    city = _CITIES.native[_CITIES.draw(rng, country, zipf=0.9)]
    birth_day = _birth_dates(rng, n)

    # Missing contact data only for people without a second record: that one must stay
    # recognisable by e-mail or phone.
    has_dup = np.zeros(n, bool)
    has_dup[dup_person] = True
    email_missing = ~has_dup & (rng.random(n) < EMAIL_MISSING_SHARE)
    phone_present = has_dup | (rng.random(n) >= PHONE_MISSING_SHARE)

    # Second records: the same e-mail up to case and spaces, or the same phone written
    # differently plus a variant of the name (and an e-mail address of their own).
    d = dup_person
    second_email = _email_addresses(
        first_email[d],
        first_initial[d],
        last_email[d],
        _DOMAINS.native[_DOMAINS.draw(rng, country[d], zipf=0.8)],
        np.floor(rng.random(nd) * 5).astype(np.int64),
        _email_number(plan, plan.persons + key[d]),
    )
    u = rng.random((nd, 4))
    # Few records (~2%): plain Python keeps these string variants readable.
    dup_email = [
        _email_variant(email[i], u[j, 0]) if dup_kind_email[j] else second_email[j]
        for j, i in enumerate(d)
    ]
    vary_name = ~dup_kind_email | (u[:, 3] < 0.6)
    dup_name = [
        _name_variant(first_latin[i], last_latin[i], full_name[i], han[i], u[j, 2])
        if vary_name[j]
        else full_name[i]
        for j, i in enumerate(d)
    ]
    # E-mail duplicates carry the phone (in another format) only sometimes.
    dup_phone_present = ~dup_kind_email | (u[:, 1] < 0.7)

    rec_country = np.concatenate([country, country[d]])
    n_templates = _N_PHONE_TEMPLATES[rec_country]
    template = np.floor(rng.random(n + nd) * n_templates).astype(np.int64)
    # A second record writes its phone in a different format than the first.
    shift = 1 + np.floor(u[:, 1] * (n_templates[n:] - 1)).astype(np.int64)
    template[n:] = (template[d] + shift) % n_templates[n:]
    phones = _phone_numbers(
        rec_country,
        np.concatenate([key, key[d]]),
        template,
        np.concatenate([phone_present, dup_phone_present]),
    )

    rec_birth = np.concatenate([birth_day, np.where(rng.random(nd) < 0.3, -1, birth_day[d])])
    birth_text = (
        pl.Series(np.maximum(rec_birth, 0)).cast(pl.Int32).cast(pl.Date).dt.strftime("%Y-%m-%d")
    )
    rec_signup = np.concatenate([signup, dup_signup])
    updated = np.maximum(rec_signup, 0.0)
    updated = updated + rng.random(n + nd) * (plan.horizon_days - updated)
    opt_in = rng.random(n + nd) < MARKETING_OPT_IN_SHARE
    frame = pl.DataFrame(
        {
            "CustomerID": rec_ids,
            "Email": _text(np.where(email_missing, None, email).tolist() + dup_email),
            "Phone": phones,
            "FullName": _text(full_name.tolist() + dup_name),
            "BirthDate": birth_text.scatter(np.flatnonzero(rec_birth < 0), None),
            "Gender": pl.Series(["F", "M", "D", None], dtype=pl.String).gather(
                np.concatenate([gender, gender[d]])
            ),
            "City": _text(np.concatenate([city, city[d]]).tolist()),
            "Country": pl.Series(_COUNTRIES).gather(rec_country),
            "SignupDate": pl.from_epoch(
                pl.Series(_to_epoch(plan, rec_signup)), time_unit="s"
            ).dt.strftime("%Y-%m-%d"),
            "MarketingOptIn": pl.Series(np.where(opt_in, "yes", "no"), dtype=pl.String),
            "UpdatedAt": pl.from_epoch(pl.Series(_to_epoch(plan, updated)), time_unit="s"),
        }
    )
    return frame.sort("CustomerID")


def _email_number(plan: _Plan, key: np.ndarray) -> np.ndarray:
    # Affine map modulo a power of ten with a multiplier coprime to 10: a bijection, so
    # numbers look random but two keys never share one.
    return (key.astype(np.int64) * 7919 + 4231) % plan.email_modulus


def _email_addresses(
    first: np.ndarray,
    initial: np.ndarray,
    last: np.ndarray,
    domain: np.ndarray,
    style: np.ndarray,
    number: np.ndarray,
) -> np.ndarray:
    """Addresses like anna.mueller4821@gmx.de. The name part has no digits and the number
    is unique, so two different numbers never give the same address."""
    local = np.select(
        [style == 0, style == 1, style == 2, style == 3],
        [first + "." + last, initial + last, last + "." + first, first + "_" + last],
        default=first,
    )
    return local + number.astype(str).astype(object) + "@" + domain


def _email_variant(email: str, u: float) -> str:
    """The same address after trim + lower-case, as a second registration often writes it."""
    local, _, domain = email.partition("@")
    if u < 0.3:
        return email.upper()
    if u < 0.6:
        return f"{local[:1].upper()}{local[1:]}@{domain.upper()}"
    if u < 0.8:
        return f" {email} "
    return f"{local.capitalize()}@{domain} "


def _name_variant(first: str, last: str, full: str, han: bool, u: float) -> str:
    """A spelling of the same name that is equal after normalisation: accents stripped
    (NFKD), case folded, commas dropped, tokens sorted (see tests/unit/test_generate.py)."""
    if han:
        return f" {full} " if u < 0.5 else full
    if u < 0.2:
        return full.upper()
    if u < 0.4:
        return full.lower()
    if u < 0.6:
        return " " + full.replace(" ", "  ") + " "
    if u < 0.8:
        return _strip_accents(full)
    return f"{last}, {first}"


def _birth_dates(rng: np.random.Generator, n: int) -> np.ndarray:
    """Days since 1970-01-01 (ages 18-90, skewed to 25-50); -1 where missing."""
    age_years = np.minimum(18.0 + rng.gamma(2.5, 9.0, n), 90.0)
    reference = (date(2025, 1, 1) - date(1970, 1, 1)).days
    days = (reference - age_years * 365.25).astype(np.int64)
    return np.where(rng.random(n) < BIRTH_DATE_MISSING_SHARE, -1, days)
