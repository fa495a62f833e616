"""Balance reports, free slots per stratum, and the low-slot alarm.

The alarm is raised by a periodic check in its own transaction, never inside an
allocation: raised there, it would sit in the audit chain right beside one participant's
allocation and tell a monitor which stratum (= cluster) that participant is in. Its event,
audit entry and metrics carry counts only; the statistician learns which stratum it is
from the lists API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from services.core import audit, outbox
from services.core.events import StratumRunningLow

from . import repository
from .domain import Allocation, ModuleBalance, StratumBalance, module_balance, stratum_balance
from .models import RandomizationList
from .service import Context, disclose


@dataclass(frozen=True)
class Balance:
    list_id: str | None
    by_module: list[ModuleBalance]
    by_stratum: list[StratumBalance] | None  # None in the blinded report


def balance(session: Session, ctx: Context, *, unblinded: bool) -> Balance:
    """Per module (blinded) and, for unblinded roles, per stratum; pilot participants apart."""
    lst = repository.latest_used_list(session)
    if lst is None:
        return Balance(None, [ModuleBalance(m, 0) for m in ctx.protocol.module_keys],
                       [] if unblinded else None)
    design = ctx.design_of(lst)
    if not unblinded:  # from the module column alone: nothing is unsealed
        counts = repository.module_counts(session, lst.id)
        return Balance(lst.id, [ModuleBalance(m, counts.get(m, 0)) for m in design.modules], None)
    rows = repository.allocations(session, list_ids=[lst.id])
    allocations = [Allocation(r.module, disclose(ctx, r).stratum, r.pilot) for r in rows]
    return Balance(lst.id, module_balance(design, allocations),
                   stratum_balance(design, allocations))


@dataclass(frozen=True)
class StratumSlots:
    stratum: str
    ref: str  # the opaque name the database uses
    slots: int
    used: int

    @property
    def free(self) -> int:
        return self.slots - self.used


def strata_of(session: Session, ctx: Context, lst: RandomizationList) -> list[StratumSlots]:
    """Slots per stratum of a list, by stratum key (for the statistician only)."""
    by_ref = {c.stratum_ref: c for c in repository.counters(session, lst.id)}
    out = []
    for key in ctx.design_of(lst).stratum_keys:
        c = by_ref.get(ctx.key.stratum_ref(lst.id, key))
        if c is not None:
            out.append(StratumSlots(key, c.stratum_ref, c.last_seq, c.next_seq - 1))
    return out


@dataclass(frozen=True)
class FreeSlots:
    """What the metrics show: no stratum, so no cluster, in any label."""

    total: int
    fewest: int
    running_low: int


def free_slots(session: Session, ctx: Context) -> FreeSlots | None:
    lst = repository.active_list(session)
    if lst is None:
        return None
    threshold = ctx.design_of(lst).low_slots_threshold
    free = [c.last_seq - c.next_seq + 1 for c in repository.counters(session, lst.id)]
    return FreeSlots(sum(free), min(free, default=0), sum(f < threshold for f in free))


def raise_low_alarms(session: Session, ctx: Context) -> StratumRunningLow | None:
    """Alarm once per stratum crossing below the threshold (reset by an extension)."""
    lst = repository.active_list(session)
    if lst is None:
        return None
    threshold = ctx.design_of(lst).low_slots_threshold
    counters = repository.counters(session, lst.id)
    free = {c.stratum_ref: c.last_seq - c.next_seq + 1 for c in counters}
    newly = []
    for c in counters:
        # The conditional UPDATE makes one process (of several replicas) the one that alarms.
        if (not c.low_alarm and free[c.stratum_ref] < threshold
                and repository.raise_low_alarm(session, lst.id, c.stratum_ref)):
            newly.append(c.stratum_ref)
    if not newly:
        return None
    low = [f for f in free.values() if f < threshold]
    event = StratumRunningLow(list_id=lst.id, strata_running_low=len(low),
                              fewest_free_slots=min(low), threshold=threshold, at=datetime.now(UTC))
    audit.append(session, actor=f"service:{ctx.producer}", role="system",
                 action="list.stratum_running_low", entity_type="list", entity_id=lst.id,
                 after={"strata_running_low": len(low), "newly_low": len(newly),
                        "fewest_free_slots": min(low), "threshold": threshold})
    outbox.enqueue(session, event, producer=ctx.producer)
    return event
