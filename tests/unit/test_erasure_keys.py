"""The erasure key ring (pipelines/erasure_keys.py): where the key comes from, what is
refused, and that nothing derived from it leaks into a repr."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipelines.config import settings_from_dict
from pipelines.erasure_keys import MissingKeyError, derive_key, key_ring
from pipelines.errors import ConfigError

A = "a" * 40
B = "b" * 40


COLUMNS = {
    "customer_id": "CustomerID",
    "order_id": "InvoiceNo",
    "order_ts": "InvoiceDate",
    "quantity": "Quantity",
    "unit_price": "UnitPrice",
}


def settings(tmp_path, erasure: dict | None = None):
    data = {"sources": {"transactions": {"path": "tx*.csv", "columns": COLUMNS}}}
    if erasure is not None:
        data["erasure"] = erasure
    return settings_from_dict(data, tmp_path)


def test_the_prefix_and_key_id_are_hmacs_of_fixed_labels():
    key = derive_key(A)
    assert key.prefix == hmac.new(A.encode(), b"crm tombstones v1", hashlib.sha256).hexdigest()
    assert len(key.prefix) == 64  # one SHA-256 block: see the module docstring
    assert (
        key.key_id
        == hmac.new(A.encode(), b"crm tombstone key id v1", hashlib.sha256).hexdigest()[:16]
    )
    assert key.prefix not in repr(key) and A not in repr(key)


def test_no_key_is_no_error_until_one_must_be_written():
    ring = key_ring(None, {})
    assert ring.current is None and ring.keys == ()
    with pytest.raises(MissingKeyError, match="CRM_ERASURE_KEY") as missing:
        ring.require_current()
    assert missing.value.exit_code == 2


def test_old_keys_are_kept_for_matching_and_the_current_one_writes():
    ring = key_ring(None, {"CRM_ERASURE_KEY": B, "CRM_ERASURE_OLD_KEYS": f"{A}, {B}"})
    assert ring.current == derive_key(B)
    assert [k.key_id for k in ring.keys] == [derive_key(B).key_id, derive_key(A).key_id]


def test_a_short_key_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="CRM_ERASURE_OLD_KEYS has 5 characters"):
        key_ring(None, {"CRM_ERASURE_KEY": A, "CRM_ERASURE_OLD_KEYS": "short"})


def test_config_names_the_variables_and_a_secret_block(tmp_path):
    s = settings(tmp_path, {"key_env": "MY_KEY", "old_keys_env": "MY_OLD"})
    assert key_ring(s, {"MY_KEY": A, "CRM_ERASURE_KEY": B}).current == derive_key(A)
    with pytest.raises(ConfigError, match="erasure.key_env"):
        settings(tmp_path, {"key_env": "not a name"})
    s = settings(tmp_path, {"key_block": "crm-erasure"})
    loaded = []

    def loader(name):
        loaded.append(name)
        return {"key": B, "old_keys": [A]}

    ring = key_ring(s, {}, secret_loader=loader)
    assert loaded == ["crm-erasure"] and ring.current == derive_key(B)
    assert ring.get(derive_key(A).key_id) is not None
    # without key_block the loader is never called (no Prefect API needed)
    key_ring(settings(tmp_path), {}, secret_loader=lambda name: pytest.fail("loaded"))
