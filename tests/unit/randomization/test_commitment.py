"""Commitments: the unsealed list verifies, any change is caught, extensions keep old roots."""

from __future__ import annotations

from hashlib import sha256

import pytest

from services.randomization.domain import (
    CommitmentError,
    ListCommitment,
    ListDesign,
    OpenedSlot,
    SealedBatch,
    Slot,
    commit_batch,
    extend_stratum,
    generate_list,
    prove_slot,
    seal_batch,
    slot_leaf,
    unseal_slots,
    verify_batch,
    verify_list,
    verify_slot,
)
from services.randomization.domain.merkle import (
    InclusionProof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    root_from_proof,
)

from .conftest import seed_of

LIST = "list-0001"


def rfc9162_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 9162, written from its recursive definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha256(b"\x01" + rfc9162_root(leaves[:k]) + rfc9162_root(leaves[k:])).digest()


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(str(i).encode()) for i in range(n)]


@pytest.mark.parametrize("n", range(1, 34))
def test_merkle_root_matches_rfc9162(n: int) -> None:
    assert merkle_root(leaves_of(n)) == rfc9162_root(leaves_of(n))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 20])
def test_every_leaf_has_a_working_inclusion_proof(n: int) -> None:
    leaves = leaves_of(n)
    root = merkle_root(leaves)
    for i in range(n):
        proof = inclusion_proof(leaves, i)
        assert root_from_proof(leaves[i], proof) == root
        other = leaves[(i + 1) % n]
        if n > 1:
            assert root_from_proof(other, proof) != root


def test_a_malformed_proof_leads_nowhere() -> None:
    leaves = leaves_of(6)
    proof = inclusion_proof(leaves, 4)
    root = merkle_root(leaves)
    assert root_from_proof(leaves[4], proof._replace(path=proof.path[:-1])) != root
    assert root_from_proof(leaves[4], proof._replace(path=(*proof.path, leaves[0]))) is None
    assert root_from_proof(leaves[4], InclusionProof(6, 6, proof.path)) is None


@pytest.fixture
def slots(design: ListDesign, seed: bytes) -> list[Slot]:
    return generate_list(design, seed, 24)


@pytest.fixture
def sealed(slots: list[Slot], key: bytes) -> SealedBatch:
    return seal_batch(slots, key=key, list_id=LIST)


@pytest.fixture
def opened(sealed: SealedBatch, key: bytes) -> list[OpenedSlot]:
    return unseal_slots(sealed.slots, key=key, list_id=LIST)


@pytest.fixture
def commitment(sealed: SealedBatch) -> ListCommitment:
    return ListCommitment(LIST).extended(sealed.commitment)


def test_the_unsealed_list_verifies(opened: list[OpenedSlot],
                                    commitment: ListCommitment) -> None:
    verify_list(opened, commitment)
    verify_list(reversed(opened), commitment)  # order of the rows does not matter
    assert commit_batch(opened, list_id=LIST, batch=1) == commitment.batches[0]


def test_one_changed_slot_is_detected(opened: list[OpenedSlot],
                                      commitment: ListCommitment) -> None:
    changed = list(opened)
    o = changed[10]
    other = next(m for m in ("PERT", "EDDT", "EMDI") if m != o.slot.module)
    changed[10] = o._replace(slot=o.slot._replace(module=other))
    with pytest.raises(CommitmentError, match="do not match the committed root"):
        verify_list(changed, commitment)


def test_a_swapped_pair_is_detected(opened: list[OpenedSlot],
                                    commitment: ListCommitment) -> None:
    i = 0
    j = next(k for k, o in enumerate(opened)
             if o.slot.stratum == opened[i].slot.stratum and o.slot.module != opened[i].slot.module)
    a, b = opened[i], opened[j]
    swapped = list(opened)
    swapped[i] = a._replace(slot=a.slot._replace(module=b.slot.module, arm=b.slot.arm))
    swapped[j] = b._replace(slot=b.slot._replace(module=a.slot.module, arm=a.slot.arm))
    with pytest.raises(CommitmentError):
        verify_list(swapped, commitment)
    # Swapping whole rows, salts included, and renumbering them is caught as well.
    moved = list(opened)
    moved[i] = b._replace(slot=b.slot._replace(seq=a.slot.seq, block=a.slot.block))
    moved[j] = a._replace(slot=a.slot._replace(seq=b.slot.seq, block=b.slot.block))
    with pytest.raises(CommitmentError):
        verify_list(moved, commitment)


def test_missing_and_extra_slots_are_detected(opened: list[OpenedSlot],
                                              commitment: ListCommitment) -> None:
    with pytest.raises(CommitmentError, match="missing"):
        verify_list(opened[1:], commitment)
    extra = opened[-1]._replace(slot=opened[-1].slot._replace(seq=opened[-1].slot.seq + 1))
    with pytest.raises(CommitmentError, match="in no committed batch"):
        verify_list([*opened, extra], commitment)
    with pytest.raises(CommitmentError, match="duplicate"):
        verify_batch([*opened, opened[0]], commitment.batches[0])


def test_the_public_leaf_hides_the_slot(opened: list[OpenedSlot], sealed: SealedBatch) -> None:
    # Knowing stratum and seq, trying the three modules without the salt finds nothing.
    o, row = opened[0], sealed.slots[0]
    assert slot_leaf(o) == row.leaf
    for design_module in ("PERT", "EDDT", "EMDI"):
        for guess_salt in (b"", bytes(16)):
            guess = o._replace(slot=o.slot._replace(module=design_module), salt=guess_salt)
            assert slot_leaf(guess) != row.leaf


def test_inclusion_proof_of_one_slot(opened: list[OpenedSlot], sealed: SealedBatch) -> None:
    batch = sealed.commitment
    leaves = [row.leaf for row in sealed.slots]
    target = opened[30]
    proof = prove_slot(leaves, batch, target.slot.stratum, target.slot.seq)
    verify_slot(target, proof, batch)
    altered = target._replace(slot=target.slot._replace(block=target.slot.block + 1))
    with pytest.raises(CommitmentError) as err:
        verify_slot(altered, proof, batch)
    assert err.value.field == "slot"
    with pytest.raises(CommitmentError) as wrong:
        verify_slot(opened[31], proof, batch)
    assert wrong.value.field == "proof"
    with pytest.raises(CommitmentError):
        prove_slot(leaves[:-1], batch, target.slot.stratum, target.slot.seq)


def test_extension_keeps_the_earlier_commitment_verifiable(
        design: ListDesign, seed: bytes, key: bytes, opened: list[OpenedSlot],
        commitment: ListCommitment) -> None:
    last = max((o.slot for o in opened if o.slot.stratum == "DYS"), key=lambda s: s.seq)
    new = extend_stratum(design, "DYS", seed_of("ext"), after=last, min_new_slots=16)
    ext = seal_batch(new, key=key, list_id=LIST, batch=commitment.next_batch)
    extended = commitment.extended(ext.commitment)
    everything = opened + unseal_slots(ext.slots, key=key, list_id=LIST)

    verify_list(everything, extended)
    verify_list(opened, commitment)  # the old statement still proves the first batch
    assert extended.batches[0] == commitment.batches[0]
    assert extended.digest() != commitment.digest()
    with pytest.raises(CommitmentError, match="no committed batch"):
        verify_list(everything, commitment)
    with pytest.raises(CommitmentError, match="batch 2"):
        verify_list(everything[:-1], extended)


def test_an_extension_must_continue_the_list(design: ListDesign, key: bytes,
                                             opened: list[OpenedSlot],
                                             commitment: ListCommitment) -> None:
    last = max((o.slot for o in opened if o.slot.stratum == "ID"), key=lambda s: s.seq)
    gap = extend_stratum(design, "ID", seed_of("gap"), after=last._replace(seq=last.seq + 4),
                         min_new_slots=4)
    ext = seal_batch(gap, key=key, list_id=LIST, batch=2)
    with pytest.raises(CommitmentError) as err:
        commitment.extended(ext.commitment)
    assert err.value.field == "ranges"
    fine = seal_batch(extend_stratum(design, "ID", seed_of("x"), after=last, min_new_slots=4),
                      key=key, list_id=LIST, batch=3)
    with pytest.raises(CommitmentError) as number:
        commitment.extended(fine.commitment)
    assert number.value.field == "batch"
    other = seal_batch(gap, key=key, list_id="list-0002", batch=2)
    with pytest.raises(CommitmentError) as list_id:
        commitment.extended(other.commitment)
    assert list_id.value.field == "list_id"


def test_a_batch_must_cover_consecutive_slots(opened: list[OpenedSlot]) -> None:
    with pytest.raises(CommitmentError) as err:
        commit_batch(opened[:3] + opened[4:], list_id=LIST, batch=1)
    assert err.value.field == "seq"


def test_the_statement_round_trips(commitment: ListCommitment) -> None:
    statement = commitment.statement()
    again = ListCommitment.from_statement(statement)
    assert again == commitment
    assert again.digest() == commitment.digest()
    assert statement["batches"][0]["size"] == commitment.batches[0].size


@pytest.mark.parametrize("damage", [
    lambda s: s | {"scheme": "other"},
    lambda s: s | {"batches": [s["batches"][0] | {"root": "zz"}]},
    lambda s: s | {"batches": [s["batches"][0] | {"root": "ab" * 31}]},
    lambda s: s | {"batches": [s["batches"][0] | {"size": 1}]},
    lambda s: s | {"batches": [{k: v for k, v in s["batches"][0].items() if k != "ranges"}]},
    lambda s: s | {"batches": [s["batches"][0] | {"ranges": s["batches"][0]["ranges"][::-1]}]},
    lambda s: s | {"batches": [s["batches"][0] | {"list_id": "other"}]},
    lambda s: s | {"batches": 3},
    lambda s: s | {"batches": ["x"]},
])
def test_a_damaged_statement_is_refused(commitment: ListCommitment, damage) -> None:
    with pytest.raises(CommitmentError):
        ListCommitment.from_statement(damage(commitment.statement()))
