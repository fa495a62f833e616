"""Checking unsealed slots against published commitments (see commitment.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import itemgetter

from .commitment import BatchCommitment, ListCommitment, slot_leaf
from .errors import CommitmentError
from .merkle import InclusionProof, inclusion_proof, leaf_hashes, merkle_root, root_from_proof
from .slots import OpenedSlot, bulk, encode_slots


def _batch_problems(opened: Sequence[OpenedSlot], batch: BatchCommitment) -> list[str]:
    ordered = sorted(opened, key=lambda o: (o.slot.stratum, o.slot.seq))
    want = [(r.stratum, seq) for r in batch.ranges for seq in range(r.first_seq, r.last_seq + 1)]
    have = [(o.slot.stratum, o.slot.seq) for o in ordered]
    if have != want:
        missing = sorted(set(want) - set(have))
        extra = sorted(set(have) - set(want))
        dupes = len(have) - len(set(have))
        parts = [f"{len(missing)} committed slot(s) missing, e.g. {missing[:3]}" if missing else "",
                 f"{len(extra)} slot(s) not committed, e.g. {extra[:3]}" if extra else "",
                 f"{dupes} duplicate slot(s)" if dupes else ""]
        return [f"batch {batch.batch}: " + "; ".join(p for p in parts if p)]
    if merkle_root([slot_leaf(o) for o in ordered]) != batch.root:
        return [f"batch {batch.batch}: the slots do not match the committed root "
                "(a slot was changed, swapped or replaced)"]
    return []


def verify_batch(opened: Sequence[OpenedSlot], batch: BatchCommitment) -> None:
    """Raise CommitmentError unless `opened` are exactly the batch's slots, unchanged."""
    problems = _batch_problems(opened, batch)
    if problems:
        raise CommitmentError(problems[0], field="slots", problems=tuple(problems))


def _list_verifies(opened: list[OpenedSlot], commitment: ListCommitment) -> bool:
    """True if the list verifies; False if it may not (`verify_list` then says why).

    Whole columns at a time: the sorted (stratum, seq) of the slots must equal the
    committed ranges laid end to end, and then each batch is a run of slices of it.
    """
    spans = sorted((r.stratum, r.first_seq, r.last_seq, i)
                   for i, b in enumerate(commitment.batches) for r in b.ranges)
    ordered = sorted(opened, key=itemgetter(0))  # by slot: stratum, seq, … as canonical_order
    slots = list(map(itemgetter(0), ordered))
    want: list[tuple[str, int]] = []
    for k, (stratum, first, last, _) in enumerate(spans):
        if k and spans[k - 1][0] == stratum and spans[k - 1][2] >= first:
            return False  # overlapping ranges: let the slow path judge
        want.extend(zip(repeat(stratum), range(first, last + 1)))
    if list(map(itemgetter(0, 1), slots)) != want:
        return False
    leaves = leaf_hashes(encode_slots(slots, map(itemgetter(1), ordered)))
    per_batch: list[list[bytes]] = [[] for _ in commitment.batches]
    offset = 0
    for _, first, last, i in spans:  # strata in order, so each batch's leaves stay canonical
        per_batch[i].extend(leaves[offset:offset + last - first + 1])
        offset += last - first + 1
    return all(merkle_root(got) == b.root
               for got, b in zip(per_batch, commitment.batches, strict=True))


def verify_list(opened: Iterable[OpenedSlot], commitment: ListCommitment) -> None:
    """Raise CommitmentError unless the full unsealed list verifies against every batch.

    Every slot must fall in exactly one batch's ranges, and every batch must be complete
    and match its root.
    """
    with bulk():
        opened = list(opened)
        if _list_verifies(opened, commitment):
            return
    where: dict[str, list[tuple[int, int, int]]] = {}
    for i, b in enumerate(commitment.batches):
        for r in b.ranges:
            where.setdefault(r.stratum, []).append((r.first_seq, r.last_seq, i))
    groups: list[list[OpenedSlot]] = [[] for _ in commitment.batches]
    problems: list[str] = []
    for o in opened:
        s = o.slot
        hit = next((i for lo, hi, i in where.get(s.stratum, ()) if lo <= s.seq <= hi), None)
        if hit is None:
            problems.append(f"slot {s.stratum} #{s.seq} is in no committed batch")
        else:
            groups[hit].append(o)
    for group, batch in zip(groups, commitment.batches, strict=True):
        problems.extend(_batch_problems(group, batch))
    if problems:
        raise CommitmentError(
            f"the list does not verify against commitment {commitment.digest()[:16]}…: "
            + "; ".join(problems[:5]), field="slots", problems=tuple(problems))


def prove_slot(leaves: Sequence[bytes], batch: BatchCommitment, stratum: str,
               seq: int) -> InclusionProof:
    """Inclusion proof of one slot from the batch's public leaves in canonical order."""
    if len(leaves) != batch.size:
        raise CommitmentError(f"batch {batch.batch} has {batch.size} leaves, "
                              f"{len(leaves)} given", field="leaves")
    return inclusion_proof(leaves, batch.index_of(stratum, seq))


def verify_slot(opened: OpenedSlot, proof: InclusionProof, batch: BatchCommitment) -> None:
    """Raise CommitmentError unless the slot is, unchanged, at its place in the batch."""
    index = batch.index_of(opened.slot.stratum, opened.slot.seq)
    if (proof.leaf_index, proof.tree_size) != (index, batch.size):
        raise CommitmentError(
            f"the proof is for leaf {proof.leaf_index} of {proof.tree_size}; slot "
            f"{opened.slot.stratum} #{opened.slot.seq} is leaf {index} of {batch.size}",
            field="proof")
    if root_from_proof(slot_leaf(opened), proof) != batch.root:
        raise CommitmentError(
            f"slot {opened.slot.stratum} #{opened.slot.seq} does not match batch "
            f"{batch.batch}'s root", field="slot")
