"""Balance reports, slot totals, and the batched low-slot alarm.

What follows a stratum (a stratum is a cluster) is never shown per allocation. Blinded
roles and metrics get totals over all strata only (one more slot used, whichever stratum).
The strata are looked at for the low-slot alarm only by a periodic check in its own
transaction, and only once a whole batch of allocations (`low_slots_alarm_batch`) was made
since the last look: the alarm event, its audit entry, the running-low gauge and the
statistician's running-low flags all change at batch boundaries, so none of them can be
tied to one participant. Which strata run low, the statistician reads from the lists API
(the flags of the last check) before extending them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session

from services.core import audit, outbox
from services.core.events import StratumRunningLow

from . import repository, stages
from .domain import (
    Allocation,
    ModuleBalance,
    StratumBalance,
    low_check_due,
    module_balance,
    stratum_balance,
)
from .domain.stages import StageBalance, stage_balance
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
    low_alarm: bool  # flagged by the last batched check (reset by an extension)

    @property
    def free(self) -> int:
        return self.slots - self.used


def strata_of(session: Session, ctx: Context, lst: RandomizationList) -> list[StratumSlots]:
    """Slots per stratum of a list, by stratum key: for the batched check and totals, never
    shown per stratum while the list allocates."""
    by_ref = {c.stratum_ref: c for c in repository.counters(session, lst.id)}
    out = []
    for key in ctx.design_of(lst).stratum_keys:
        c = by_ref.get(ctx.key.stratum_ref(lst.id, key))
        if c is not None:
            out.append(StratumSlots(key, c.stratum_ref, c.last_seq, c.next_seq - 1, c.low_alarm))
    return out


@dataclass(frozen=True)
class SlotTotals:
    """What blinded readers and metrics see: sums over all strata, and the flags of the last
    batched check (never a count that moves with one allocation's stratum)."""

    slots: int
    used: int
    running_low: tuple[str, ...]  # stratum keys flagged by the last batched check

    @property
    def free(self) -> int:
        return self.slots - self.used


def totals(session: Session, ctx: Context, lst: RandomizationList) -> SlotTotals:
    strata = strata_of(session, ctx, lst)
    return SlotTotals(sum(s.slots for s in strata), sum(s.used for s in strata),
                      tuple(s.stratum for s in strata if s.low_alarm))


def free_slots(session: Session, ctx: Context) -> SlotTotals | None:
    lst = repository.active_list(session)
    return None if lst is None else totals(session, ctx, lst)


def raise_low_alarms(session: Session, ctx: Context) -> StratumRunningLow | None:
    """Once per batch of allocations: flag strata newly below the threshold and alarm."""
    lst = repository.active_list(session)
    if lst is None:
        return None
    design = ctx.design_of(lst)
    counters = repository.counters(session, lst.id)
    used = sum(c.next_seq - 1 for c in counters)
    if not low_check_due(used, lst.low_check_used, design.low_slots_alarm_batch):
        return None
    # The conditional UPDATE makes one process (of several replicas) the one that checks.
    if not repository.claim_low_check(session, lst.id, lst.low_check_used, used):
        return None
    threshold = design.low_slots_threshold
    free = {c.stratum_ref: c.last_seq - c.next_seq + 1 for c in counters}
    newly = [c.stratum_ref for c in counters
             if not c.low_alarm and free[c.stratum_ref] < threshold
             and repository.raise_low_alarm(session, lst.id, c.stratum_ref)]
    if not newly:
        return None
    low = [f for f in free.values() if f < threshold]
    event = StratumRunningLow(list_id=lst.id, strata_running_low=len(low),
                              fewest_free_slots=min(low), threshold=threshold, at=datetime.now(UTC))
    audit.append(session, actor=f"service:{ctx.producer}", role="system",
                 action="list.stratum_running_low", entity_type="list", entity_id=lst.id,
                 after={"strata_running_low": len(low), "newly_low": len(newly),
                        "fewest_free_slots": min(low), "threshold": threshold,
                        "allocations_in_batch": used - lst.low_check_used})
    outbox.enqueue(session, event, producer=ctx.producer)
    return event


def stage_balances(session: Session, ctx: Context) -> list[tuple[str, StageBalance]]:
    """Unblinded: each later stage's options per stratum (outcome × first-stage arm)."""
    lst = repository.latest_used_list(session)
    if lst is None:
        return []
    design = ctx.design_of(lst)
    by_stratum: dict[str, list[str]] = {}
    for row in stages.stage_allocations(session):
        if row.list_id == lst.id:
            d = stages.disclose_stage(ctx, row)
            by_stratum.setdefault(d.stratum, []).append(d.option)
    return [(stage.key, b) for stage in design.stages
            for b in stage_balance(stage, by_stratum)]
