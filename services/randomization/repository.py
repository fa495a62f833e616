"""Every query of the randomization database.

`lock_*` take a row lock (`SELECT … FOR UPDATE`) on PostgreSQL; on SQLite the clause is
not rendered and not needed: every transaction starts with BEGIN IMMEDIATE, so writers
are serialized already (services/core/db.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, insert, update
from sqlmodel import Session, col, select

from .domain import SealedSlot
from .models import (
    AllocationRow,
    ListCommitmentRow,
    ListStatus,
    NamedCounter,
    RandomizationList,
    SealedSlotRow,
    StratumCounter,
)

# ── lists ─────────────────────────────────────────────────────────────────────────────


def get_list(session: Session, list_id: str) -> RandomizationList | None:
    return session.get(RandomizationList, list_id)


def lock_list(session: Session, list_id: str) -> RandomizationList | None:
    """Serializes changes of one list (seal, extend, unseal)."""
    return session.exec(select(RandomizationList).where(col(RandomizationList.id) == list_id)
                        .with_for_update().execution_options(populate_existing=True)).first()


def all_lists(session: Session) -> list[RandomizationList]:
    return list(session.exec(select(RandomizationList)
                             .order_by(col(RandomizationList.created_at), col(RandomizationList.id))))


def active_list(session: Session, *, share_lock: bool = False) -> RandomizationList | None:
    """The sealed list: the one that allocates (a partial unique index keeps it single).

    `share_lock` (FOR SHARE): allocations run side by side, but never beside a seal,
    an extension or the unsealing, which lock the row FOR UPDATE.
    """
    query = select(RandomizationList).where(col(RandomizationList.status) == ListStatus.SEALED)
    if share_lock:
        query = query.with_for_update(read=True).execution_options(populate_existing=True)
    return session.exec(query).first()


def latest_used_list(session: Session) -> RandomizationList | None:
    """The sealed list, else the last one sealed (for reports after closure)."""
    return active_list(session) or session.exec(
        select(RandomizationList).where(col(RandomizationList.sealed_at).is_not(None))
        .order_by(col(RandomizationList.sealed_at).desc())).first()


# ── slots and counters ──────────────────────────────────────────────────────────────


def add_slots(session: Session, list_id: str, refs: dict[str, str], slots: Iterable[SealedSlot],
              *, batch: int) -> None:
    rows = [{"list_id": list_id, "stratum_ref": refs[s.stratum], "seq": s.seq, "batch": batch,
             "nonce": s.nonce, "ciphertext": s.ciphertext, "leaf": s.leaf, "used_by": None}
            for s in slots]
    if rows:
        session.connection().execute(insert(SealedSlotRow), rows)


def slot(session: Session, list_id: str, ref: str, seq: int) -> SealedSlotRow | None:
    return session.get(SealedSlotRow, (list_id, ref, seq))


def slots_of(session: Session, list_id: str) -> list[SealedSlotRow]:
    return list(session.exec(select(SealedSlotRow).where(col(SealedSlotRow.list_id) == list_id)
                             .order_by(col(SealedSlotRow.stratum_ref), col(SealedSlotRow.seq))))


def add_counter(session: Session, list_id: str, ref: str, last_seq: int) -> None:
    session.add(StratumCounter(list_id=list_id, stratum_ref=ref, next_seq=1, last_seq=last_seq))


def lock_counter(session: Session, list_id: str, ref: str) -> StratumCounter | None:
    """The per-stratum row lock: holders take slots strictly in seq order, one at a time."""
    return session.exec(select(StratumCounter).where(col(StratumCounter.list_id) == list_id,
                                                     col(StratumCounter.stratum_ref) == ref)
                        .with_for_update().execution_options(populate_existing=True)).first()


def counters(session: Session, list_id: str) -> list[StratumCounter]:
    return list(session.exec(select(StratumCounter).where(col(StratumCounter.list_id) == list_id)
                             .order_by(col(StratumCounter.stratum_ref))))


def raise_low_alarm(session: Session, list_id: str, ref: str) -> bool:
    """Flag a stratum as alarmed; False when another process flagged it first."""
    result = session.connection().execute(
        update(StratumCounter).where(col(StratumCounter.list_id) == list_id,
                                     col(StratumCounter.stratum_ref) == ref,
                                     col(StratumCounter.low_alarm).is_(False))
        .values(low_alarm=True))
    return bool(result.rowcount)


# ── commitments ─────────────────────────────────────────────────────────────────────


def commitments(session: Session, list_id: str) -> list[ListCommitmentRow]:
    return list(session.exec(select(ListCommitmentRow)
                             .where(col(ListCommitmentRow.list_id) == list_id)
                             .order_by(col(ListCommitmentRow.batch))))


# ── allocations ─────────────────────────────────────────────────────────────────────


def allocation(session: Session, record: str) -> AllocationRow | None:
    """Always asks the database (a concurrent transaction may have committed it since)."""
    return session.exec(select(AllocationRow).where(col(AllocationRow.record) == record)
                        .execution_options(populate_existing=True)).first()


def allocations(session: Session, *, list_ids: Sequence[str] | None = None) -> list[AllocationRow]:
    query = select(AllocationRow)
    if list_ids is not None:
        query = query.where(col(AllocationRow.list_id).in_(list_ids))
    return list(session.exec(query.order_by(col(AllocationRow.allocated_at),
                                            col(AllocationRow.allocation_number))))


def module_counts(session: Session, list_id: str) -> dict[str, int]:
    """Randomized (non-pilot) participants per module: no unsealing needed."""
    rows = session.exec(select(AllocationRow.module, func.count())
                        .where(col(AllocationRow.list_id) == list_id,
                               col(AllocationRow.pilot).is_(False))
                        .group_by(col(AllocationRow.module)))
    return {module: n for module, n in rows}


def lock_named_counter(session: Session, name: str) -> NamedCounter | None:
    """A named counter under its row lock, unchanged (None if it was never made)."""
    return session.exec(select(NamedCounter).where(col(NamedCounter.name) == name)
                        .with_for_update().execution_options(populate_existing=True)).first()


def next_counter(session: Session, name: str) -> int:
    """Increment a named counter under its row lock and return the new value."""
    row = session.exec(select(NamedCounter).where(col(NamedCounter.name) == name)
                       .with_for_update().execution_options(populate_existing=True)).first()
    if row is None:
        row = NamedCounter(name=name, value=0)
    row.value += 1
    session.add(row)
    return row.value


def claim_low_check(session: Session, list_id: str, seen: int, used: int) -> bool:
    """Move the list's low-slot check mark from `seen` to `used` slots; False when another
    process moved it first (it does this batch's check)."""
    result = session.connection().execute(
        update(RandomizationList).where(col(RandomizationList.id) == list_id,
                                        col(RandomizationList.low_check_used) == seen)
        .values(low_check_used=used))
    return bool(result.rowcount)
