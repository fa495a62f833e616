"""Public commitments to a sealed list, and their verification.

A list is committed batch by batch: batch 1 is the list as first sealed, every extension is
one more batch. A batch commitment is the RFC 9162 Merkle root (merkle.py) over the leaves
of its slots in canonical order (stratum key, then seq), where a leaf is
SHA-256(0x00 ‖ canonical encoding of slot and salt) (slots.py). The 128-bit random salt
sits only inside the sealed slot, so the public root and leaves cannot be brute-forced from
the three modules a slot could hold. The batch also states which seq range of each stratum
it covers; ranges of consecutive batches continue one another.

Extending a list never touches an earlier batch: the new `ListCommitment` is the old one
with one more batch, so the earlier statement still verifies the slots it covered. At
closure the unsealed list is checked against every batch (`verify_list`); one slot can be
checked alone with an inclusion proof (`prove_slot`, `verify_slot`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, NamedTuple

from .errors import CommitmentError
from .merkle import leaf_hash, merkle_root
from .slots import OpenedSlot, Slot, encode_slot

SCHEME = "tailor.list-commitment/1"


class StratumRange(NamedTuple):
    stratum: str
    first_seq: int
    last_seq: int

    @property
    def slots(self) -> int:
        return self.last_seq - self.first_seq + 1


def slot_leaf(opened: OpenedSlot) -> bytes:
    return leaf_hash(encode_slot(opened.slot, opened.salt))


def stratum_ranges(slots: Sequence[Slot]) -> tuple[StratumRange, ...]:
    """Ranges of canonically ordered slots; each stratum's seqs must be consecutive."""
    ranges: list[StratumRange] = []
    stratum, first, last = "", 0, 0
    for s in slots:
        if s.stratum == stratum and s.seq == last + 1:
            last = s.seq
            continue
        if s.stratum == stratum:
            raise CommitmentError(f"stratum {s.stratum}: seq {s.seq} follows {last}; "
                                  "a batch covers consecutive slots", field="seq")
        if s.stratum < stratum:
            raise CommitmentError("slots are not in canonical order", field="stratum")
        if stratum:
            ranges.append(StratumRange(stratum, first, last))
        stratum, first, last = s.stratum, s.seq, s.seq
    if stratum:
        ranges.append(StratumRange(stratum, first, last))
    return tuple(ranges)


@dataclass(frozen=True)
class BatchCommitment:
    list_id: str
    batch: int  # 1 = the list as first sealed, 2.. = extensions
    root: bytes
    ranges: tuple[StratumRange, ...]  # sorted by stratum

    @property
    def size(self) -> int:
        return sum(r.slots for r in self.ranges)

    def index_of(self, stratum: str, seq: int) -> int:
        """Position of a slot among this batch's leaves."""
        offset = 0
        for r in self.ranges:
            if r.stratum == stratum and r.first_seq <= seq <= r.last_seq:
                return offset + seq - r.first_seq
            offset += r.slots
        raise CommitmentError(f"slot {stratum} #{seq} is not in batch {self.batch}", field="seq")

    def statement(self) -> dict[str, Any]:
        return {"batch": self.batch, "list_id": self.list_id, "root": self.root.hex(),
                "size": self.size, "ranges": [r._asdict() for r in self.ranges]}

    @classmethod
    def from_statement(cls, data: dict[str, Any]) -> BatchCommitment:
        try:
            ranges = tuple(StratumRange(str(r["stratum"]), int(r["first_seq"]),
                                        int(r["last_seq"])) for r in data["ranges"])
            made = cls(str(data["list_id"]), int(data["batch"]), bytes.fromhex(data["root"]),
                       ranges)
        except (KeyError, TypeError, ValueError) as err:
            raise CommitmentError(f"malformed batch commitment: {err}", field="batches") from None
        if made.size != data.get("size", made.size) or len(made.root) != 32:
            raise CommitmentError("batch commitment size or root is inconsistent", field="root")
        strata = [r.stratum for r in ranges]
        if strata != sorted(set(strata)) or any(not 1 <= r.first_seq <= r.last_seq
                                                for r in ranges):
            raise CommitmentError("batch ranges must be one per stratum, sorted, with "
                                  "1 ≤ first_seq ≤ last_seq", field="ranges")
        return made


def commit_leaves(slots: Sequence[Slot], leaves: Sequence[bytes], *, list_id: str,
                  batch: int) -> BatchCommitment:
    """Commitment of canonically ordered slots whose leaves are already hashed."""
    return BatchCommitment(list_id, batch, merkle_root(leaves), stratum_ranges(slots))


def commit_batch(opened: Iterable[OpenedSlot], *, list_id: str, batch: int) -> BatchCommitment:
    ordered = sorted(opened, key=lambda o: (o.slot.stratum, o.slot.seq))
    return commit_leaves([o.slot for o in ordered], [slot_leaf(o) for o in ordered],
                         list_id=list_id, batch=batch)


@dataclass(frozen=True)
class ListCommitment:
    list_id: str
    batches: tuple[BatchCommitment, ...] = ()

    @property
    def next_batch(self) -> int:
        return len(self.batches) + 1

    def covered(self) -> dict[str, int]:
        """Last committed seq of every stratum."""
        last: dict[str, int] = {}
        for b in self.batches:
            for r in b.ranges:
                last[r.stratum] = max(last.get(r.stratum, 0), r.last_seq)
        return last

    def extended(self, batch: BatchCommitment) -> ListCommitment:
        """This commitment plus one batch that continues every stratum it touches."""
        if batch.list_id != self.list_id:
            raise CommitmentError(f"batch is of list {batch.list_id!r}, not {self.list_id!r}",
                                  field="list_id")
        if batch.batch != self.next_batch:
            raise CommitmentError(f"batch {batch.batch} given, {self.next_batch} expected",
                                  field="batch")
        last = self.covered()
        for r in batch.ranges:
            if r.first_seq != last.get(r.stratum, 0) + 1:
                raise CommitmentError(
                    f"stratum {r.stratum}: batch starts at seq {r.first_seq}, "
                    f"the list ends at {last.get(r.stratum, 0)}", field="ranges")
        return ListCommitment(self.list_id, (*self.batches, batch))

    def statement(self) -> dict[str, Any]:
        """The public, downloadable form (JSON-ready)."""
        return {"scheme": SCHEME, "list_id": self.list_id,
                "batches": [b.statement() for b in self.batches]}

    def digest(self) -> str:
        """SHA-256 of the statement as canonical JSON (sorted keys, no spaces): for the audit."""
        text = json.dumps(self.statement(), sort_keys=True, separators=(",", ":"))
        return sha256(text.encode()).hexdigest()

    @classmethod
    def from_statement(cls, data: dict[str, Any]) -> ListCommitment:
        if not isinstance(data, dict) or data.get("scheme") != SCHEME:
            raise CommitmentError(f"not a {SCHEME} statement", field="scheme")
        batches = data.get("batches")
        if not isinstance(batches, list):
            raise CommitmentError("the statement has no list of batches", field="batches")
        made = cls(str(data.get("list_id", "")))
        for b in batches:
            if not isinstance(b, dict):
                raise CommitmentError("a batch must be an object", field="batches")
            made = made.extended(BatchCommitment.from_statement(b))
        return made
