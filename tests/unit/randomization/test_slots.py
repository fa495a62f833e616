"""The canonical slot encoding: exactly as documented, and read back strictly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.randomization.domain import Slot, decode_slot, encode_slot

SALT = bytes(range(16))
SLOT = Slot("DYS|site-a", 7, 2, 8, "PERT", "personalized")


def test_encoding_is_the_documented_json_array() -> None:
    assert encode_slot(SLOT, SALT) == (
        b'["tailor.slot/1","DYS|site-a",7,2,8,"PERT","personalized",'
        b'"000102030405060708090a0b0c0d0e0f"]')


def test_padding_spaces_are_read_back() -> None:
    assert decode_slot(encode_slot(SLOT, SALT) + b"    ") == (SLOT, SALT)


@pytest.mark.parametrize("bad", [
    b'["tailor.slot/1", "DYS",7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",07,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/2","DYS",7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","0"]',
    b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","00"]x',
    b'["tailor.slot/1","D\xc3\x84",7,2,8,"PERT","personalized","00"]',
    b"\xff",
])
def test_anything_but_the_canonical_form_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        decode_slot(bad)


@given(st.text(min_size=1), st.integers(1, 10**9), st.text(), st.binary(max_size=32))
def test_any_slot_round_trips(stratum: str, seq: int, module: str, salt: bytes) -> None:
    slot = Slot(stratum, seq, seq % 7 + 1, 12, module, "arm")
    assert decode_slot(encode_slot(slot, salt)) == (slot, salt)
