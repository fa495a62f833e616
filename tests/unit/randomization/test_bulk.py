"""The many-slot paths (column-wise, for speed) give exactly what the one-slot forms give."""

from __future__ import annotations

import gc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.randomization.domain import Slot, decode_slot, encode_slot
from services.randomization.domain.merkle import leaf_hash, leaf_hashes
from services.randomization.domain.slots import bulk, decode_slots, encode_slots

GOOD = b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","00"]'


@given(st.lists(st.tuples(st.text(min_size=1), st.integers(0, 10**9), st.text(), st.text(),
                          st.binary(max_size=20)), max_size=8))
def test_many_slot_forms_match_the_one_slot_forms(rows: list) -> None:
    slots = [Slot(s, seq, seq % 5, 12, m, a) for s, seq, m, a, _ in rows]
    salts = [salt for *_, salt in rows]
    encoded = encode_slots(slots, salts)
    assert encoded == [encode_slot(s, salt) for s, salt in zip(slots, salts, strict=True)]
    assert leaf_hashes(encoded) == [leaf_hash(e) for e in encoded]
    decoded = decode_slots([e + b"  " for e in encoded])
    if decoded is not None:  # None only where the one-slot decoder decides (and may refuse)
        assert decoded == [decode_slot(e) for e in encoded]


@pytest.mark.parametrize("bad", [
    b'["tailor.slot/1", "DYS",7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",07,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",-7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",7.0,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",true,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",Infinity,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",NaN,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS","7",2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1",["DYS"],7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",7,2,8,1,"personalized","00"]',
    b'["tailor.slot/2","DYS",7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","0"]',
    b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","0A"]',
    b'["tailor.slot/1","D\\u0059S",7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","D\xc3\x84",7,2,8,"PERT","personalized","00"]',
    b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","00",1]',
    b'["tailor.slot/1","DYS",7,2,8,"PERT","personalized","00"],' + GOOD,
    b"\xff",
])
def test_one_bad_plaintext_sends_the_batch_to_the_strict_decoder(bad: bytes) -> None:
    assert decode_slots([GOOD, bad]) is None
    assert decode_slots([GOOD]) == [decode_slot(GOOD)]


def test_bulk_pauses_the_collector_only_while_it_runs() -> None:
    assert gc.isenabled()
    with bulk():
        assert not gc.isenabled()
    assert gc.isenabled()
