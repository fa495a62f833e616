"""Sealed slots: unreadable without the key, bound to their place, uniform in size."""

from __future__ import annotations

import pytest

from services.randomization.domain import (
    ListDesign,
    SealedBatch,
    SealError,
    SecretError,
    Slot,
    generate_list,
    seal_batch,
    unseal_slot,
    unseal_slots,
)

LIST = "list-0001"


@pytest.fixture
def slots(design: ListDesign, seed: bytes) -> list[Slot]:
    return generate_list(design, seed, 24)


@pytest.fixture
def sealed(slots: list[Slot], key: bytes) -> SealedBatch:
    return seal_batch(slots, key=key, list_id=LIST)


def test_unsealing_gives_back_the_slots(slots: list[Slot], sealed: SealedBatch,
                                        key: bytes) -> None:
    opened = unseal_slots(sealed.slots, key=key, list_id=LIST)
    assert [o.slot for o in opened] == slots
    assert unseal_slot(sealed.slots[5], key=key, list_id=LIST).slot == slots[5]


def test_ciphertext_shows_neither_module_nor_arm(design: ListDesign,
                                                 sealed: SealedBatch) -> None:
    # Names of 4+ bytes only: a 2-byte stratum key like "AC" turns up in random bytes by
    # chance (about once per 600 slots), which would make this test fail for no reason.
    for row in sealed.slots:
        for secret in (*design.modules, *design.arms, "block", row.stratum):
            if len(secret) >= 4:
                assert secret.encode() not in row.ciphertext


def test_every_ciphertext_of_a_batch_has_the_same_length(sealed: SealedBatch) -> None:
    # "personalized" and "non_personalized" differ in length: padding hides the arm.
    assert len({len(row.ciphertext) for row in sealed.slots}) == 1


def test_another_key_cannot_open_a_slot(sealed: SealedBatch) -> None:
    with pytest.raises(SealError) as err:
        unseal_slot(sealed.slots[0], key=bytes(32), list_id=LIST)
    assert err.value.field == "ciphertext"
    assert (err.value.stratum, err.value.seq) == (sealed.slots[0].stratum, sealed.slots[0].seq)


def test_a_ciphertext_moved_to_another_seq_does_not_open(sealed: SealedBatch,
                                                         key: bytes) -> None:
    a, b = sealed.slots[0], sealed.slots[1]
    moved = a._replace(nonce=b.nonce, ciphertext=b.ciphertext, leaf=b.leaf)
    with pytest.raises(SealError):
        unseal_slot(moved, key=key, list_id=LIST)


def test_a_ciphertext_moved_to_another_stratum_does_not_open(sealed: SealedBatch,
                                                             key: bytes) -> None:
    row = sealed.slots[0]
    other = next(s.stratum for s in sealed.slots if s.stratum != row.stratum)
    with pytest.raises(SealError):
        unseal_slot(row._replace(stratum=other), key=key, list_id=LIST)


def test_a_slot_of_another_list_does_not_open(sealed: SealedBatch, key: bytes) -> None:
    with pytest.raises(SealError):
        unseal_slot(sealed.slots[0], key=key, list_id="list-0002")


def test_an_altered_ciphertext_does_not_open(sealed: SealedBatch, key: bytes) -> None:
    row = sealed.slots[3]
    flipped = bytes([row.ciphertext[0] ^ 1]) + row.ciphertext[1:]
    with pytest.raises(SealError):
        unseal_slot(row._replace(ciphertext=flipped), key=key, list_id=LIST)


def test_an_altered_stored_leaf_is_noticed(sealed: SealedBatch, key: bytes) -> None:
    row = sealed.slots[3]
    with pytest.raises(SealError) as err:
        unseal_slot(row._replace(leaf=sealed.slots[4].leaf), key=key, list_id=LIST)
    assert err.value.field == "leaf"


def test_nonces_and_salts_are_fresh_for_every_slot(slots: list[Slot], sealed: SealedBatch,
                                                   key: bytes) -> None:
    assert len({row.nonce for row in sealed.slots}) == len(slots)
    opened = unseal_slots(sealed.slots, key=key, list_id=LIST)
    assert len({o.salt for o in opened}) == len(slots)
    again = seal_batch(slots, key=key, list_id=LIST)
    assert again.commitment.root != sealed.commitment.root


@pytest.mark.parametrize("bad", [b"", bytes(16), bytes(31), "k" * 32])
def test_the_key_must_be_256_bits(slots: list[Slot], bad: bytes) -> None:
    with pytest.raises(SecretError) as err:
        seal_batch(slots, key=bad, list_id=LIST)
    assert err.value.field == "key"


def test_a_list_id_is_required(slots: list[Slot], key: bytes) -> None:
    with pytest.raises(SealError) as err:
        seal_batch(slots, key=key, list_id="")
    assert err.value.field == "list_id"
