"""Digests of secret data in audit entries are keyed: a reader cannot test guesses."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from gateway.redcap.service import form_hash
from services.core.audit import canonical_json
from services.core.digests import DigestKey, DigestKeyError, load_digest_key


def test_a_keyed_digest_is_not_the_plain_hash_and_differs_per_key() -> None:
    value = [["P1", "personalized"], ["P2", "non_personalized"]]
    one, two = DigestKey(os.urandom(32), source="a"), DigestKey(os.urandom(32), source="b")
    plain = hashlib.sha256(canonical_json(value).encode()).hexdigest()
    assert one.digest(value) == one.digest(value) != plain
    assert one.digest(value) != two.digest(value)
    assert one.key_id != two.key_id and "source" not in repr(one)


def test_a_yes_no_form_digest_cannot_be_recomputed_from_guesses() -> None:
    row = {"wd_withdrawn": "1", "withdrawal_complete": "2", "dem_age": "50"}
    key = DigestKey(os.urandom(32), source="test")
    digest = form_hash(row, ["wd_withdrawn"], "withdrawal", key)
    guesses = {hashlib.sha256(canonical_json({"wd_withdrawn": w, "withdrawal_complete": c})
                              .encode()).hexdigest() for w in ("0", "1", "") for c in "012"}
    assert digest not in guesses
    assert digest == form_hash({**row, "dem_age": "61"}, ["wd_withdrawn"], "withdrawal", key)


def test_digest_keys_come_from_the_environment_or_the_embedded_file(tmp_path: Path) -> None:
    raw = base64.b64encode(os.urandom(32)).decode()
    assert load_digest_key("safety", tmp_path, embedded=False,
                           environ={"TAILOR_SAFETY_DIGEST_KEY": raw}).key_id
    with pytest.raises(DigestKeyError) as missing:
        load_digest_key("safety", tmp_path, embedded=False, environ={})
    assert missing.value.source == "TAILOR_SAFETY_DIGEST_KEY"
    with pytest.raises(DigestKeyError, match="32 bytes"):
        load_digest_key("safety", tmp_path, embedded=False,
                        environ={"TAILOR_SAFETY_DIGEST_KEY": base64.b64encode(b"short").decode()})
    made = load_digest_key("gateway", tmp_path, embedded=True, environ={})
    assert made.key_id == load_digest_key("gateway", tmp_path, embedded=True, environ={}).key_id
    assert (tmp_path / "keys" / "gateway-digest.key").stat().st_mode & 0o777 == 0o600
