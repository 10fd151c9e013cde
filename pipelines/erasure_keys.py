"""The erasure key: tombstones are keyed hashes, and the key lives outside the database.

A tombstone (``audit.erasure_tombstones``) is ``sha256(prefix || normalised value)``, where
``prefix`` is derived from the operator's erasure key and never stored:

    prefix = hex(HMAC-SHA256(key, "crm tombstones v1"))   (64 ASCII characters)

The key comes from an environment variable (``[erasure] key_env``, default
``CRM_ERASURE_KEY``) or, when ``[erasure] key_block`` names one, a Prefect Secret block
(loaded only then: it needs Prefect's API). Retired keys stay usable for matching in
``[erasure] old_keys_env`` (default ``CRM_ERASURE_OLD_KEYS``, keys separated by commas or
white space). Each tombstone records the ``key_id`` it was written under, so the ring
knows which key to try; a key id is ``hex(HMAC-SHA256(key, "crm tombstone key id v1"))[:16]``
and reveals nothing about the key.

Why a derived secret prefix hashed by DuckDB, not HMAC computed in Python: DuckDB has no
``hmac()``, and matching happens inside SQL over every distinct id, e-mail and token of
newly ingested rows. At 1M seven-digit ids, ``sha256($prefix || v)`` in DuckDB took
0.6 s; HMAC in Python (hashlib) 4.2-4.6 s, a scalar Python UDF 3.5-4.7 s, an Arrow UDF
6-8 s (two runs, benchmarks/tombstones.py), and those pull every personal value through
Python.

Is ``sha256(prefix || value)`` sound here? HMAC exists because of length extension: from
``t = sha256(p || m)`` anyone can compute ``sha256(p || m || padding || x)`` without ``p``.
That breaks *authenticity* (a MAC forged for a longer message). Tombstones need something
else: that nobody without the key can test a guess ("is 4711042 forgotten?"), i.e. that
the stored values look random to someone who lacks ``p``. The prefix is exactly 64 bytes,
one SHA-256 block, so the first compression turns it into a secret 256-bit chaining value
and the rest is SHA-256 with a secret IV (the NMAC inner function), a pseudorandom function
under the usual assumption on SHA-256's compression function. Length extension only lets
someone who can already read a tombstone produce the tombstone of a value that ends in
SHA-256 padding bytes; writing such a row needs write access to the database, which can
insert or delete tombstones directly anyway. The prefix is derived by HMAC (never the key
itself in SQL), is passed as a query parameter and is never stored.

Legacy tombstones (written before keys, ``key_id = 'salt-v0'``) are ``sha256(salt || v)``
with the salt in ``audit.settings``: they keep matching under that salt, and are weak (the
salt is in the same file, so short ids can be recovered by brute force). Forgetting such a
person again (``crm forget`` accepts ids already forgotten) replaces their legacy tombstone
with a keyed one; when none is left, the salt is deleted.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipelines.errors import ConfigError

LEGACY_KEY_ID = "salt-v0"
MIN_KEY_CHARS = 32
_PREFIX_LABEL = b"crm tombstones v1"
_KEY_ID_LABEL = b"crm tombstone key id v1"


@dataclass(frozen=True)
class TombstoneKey:
    """One key of the ring: its public ``key_id`` and the derived hashing ``prefix``."""

    key_id: str
    prefix: str

    def __repr__(self) -> str:  # the prefix matches tombstones: never in a log
        return f"TombstoneKey({self.key_id!r})"


@dataclass(frozen=True)
class KeyRing:
    """The keys tombstones are written and matched with.

    ``current`` writes new tombstones (None when no key is set); ``keys`` match (current
    first, then the retired keys, then the legacy salt when the warehouse still has one).
    ``how_to_set`` is the sentence an error tells the operator.
    """

    current: TombstoneKey | None
    keys: tuple[TombstoneKey, ...]
    how_to_set: str

    def get(self, key_id: str) -> TombstoneKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)

    def with_legacy_salt(self, salt: str | None) -> KeyRing:
        if not salt or self.get(LEGACY_KEY_ID):
            return self
        return KeyRing(
            self.current, (*self.keys, TombstoneKey(LEGACY_KEY_ID, salt)), self.how_to_set
        )

    def require_current(self) -> TombstoneKey:
        """The key new tombstones are written with; :class:`MissingKeyError` without one."""
        if self.current is None:
            raise MissingKeyError(
                "crm forget writes tombstones (keyed hashes of the forgotten ids, e-mails and "
                f"phones) and needs the erasure key, which is not set. {self.how_to_set} "
                "Nothing was changed."
            )
        return self.current


class MissingKeyError(ConfigError):
    """The erasure key (or a retired key some tombstones use) is not available."""


def derive_key(key: str) -> TombstoneKey:
    """The ring entry of one operator key (text, at least :data:`MIN_KEY_CHARS` long)."""
    raw = key.encode("utf-8")
    return TombstoneKey(
        key_id=hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16],
        prefix=hmac.new(raw, _PREFIX_LABEL, hashlib.sha256).hexdigest(),
    )


def key_ring(
    settings=None, environ: Mapping[str, str] | None = None, secret_loader=None
) -> KeyRing:
    """The key ring from ``settings.erasure`` (env variable names, Secret block name).

    ``environ`` defaults to ``os.environ``; ``secret_loader(name)`` returns a Secret
    block's value (default: Prefect's ``Secret.load(name).get()``), called only when
    ``key_block`` is configured. Raises :class:`ConfigError` for a key shorter than
    :data:`MIN_KEY_CHARS` characters. A missing key is not an error here: a warehouse
    without tombstones needs none (see :meth:`KeyRing.require_current`).
    """
    from pipelines.config_sections import ErasureConfig

    cfg = getattr(settings, "erasure", None) or ErasureConfig()
    env = os.environ if environ is None else environ
    how = (
        f"Set it in the environment variable {cfg.key_env} (at least {MIN_KEY_CHARS} "
        'characters, e.g. the output of python -c "import secrets; '
        'print(secrets.token_hex(32))"), keep it outside the warehouse (a secret store), '
        "and keep every earlier key in "
        f"{cfg.old_keys_env} (comma-separated) for as long as tombstones use it."
    )
    current_text = env.get(cfg.key_env) or None
    old_texts = _split(env.get(cfg.old_keys_env, ""))
    if cfg.key_block:
        how = (
            f"Save it in the Prefect Secret block {cfg.key_block!r} (a string, or "
            '{"key": ..., "old_keys": [...]}), or unset [erasure] key_block and use the '
            f"environment variable {cfg.key_env}."
        )
        value = (secret_loader or _load_secret)(cfg.key_block)
        if isinstance(value, Mapping):
            current_text = value.get("key") or current_text
            old_texts += [str(v) for v in value.get("old_keys") or ()]
        elif value:
            current_text = str(value)
    for text, where in [(current_text, cfg.key_env)] + [(t, cfg.old_keys_env) for t in old_texts]:
        if text is not None and len(text) < MIN_KEY_CHARS:
            raise ConfigError(
                f"The erasure key in {where} has {len(text)} characters; it needs at least "
                f"{MIN_KEY_CHARS} (a short key can be guessed, and with it every tombstone). " + how
            )
    current = derive_key(current_text) if current_text else None
    keys = [current] if current else []
    for text in old_texts:
        k = derive_key(text)
        if all(k.key_id != o.key_id for o in keys):
            keys.append(k)
    return KeyRing(current, tuple(keys), how)


def _split(text: str) -> list[str]:
    return [t for t in re.split(r"[,\s]+", text) if t]


def _load_secret(name: str):
    try:
        from prefect.blocks.system import Secret

        return Secret.load(name).get()
    except Exception as exc:  # a missing block, no API: the operator must fix the config
        raise ConfigError(
            f"[erasure] key_block names the Prefect Secret block {name!r}, which cannot be "
            f"loaded ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Create it (prefect block create secret) or unset key_block."
        ) from exc
