"""Allocation use cases: take a session and keyword arguments; never commit.

Exactly once per participant, strictly in list order, on any number of replicas:
1. an existing allocation of the record is returned as it is (no second event);
2. the sealed list's row is share-locked (no seal, extension or unsealing meanwhile) and
   the stratum's counter row is locked (`SELECT … FOR UPDATE`; on SQLite, BEGIN IMMEDIATE
   already holds the write lock); the record is looked up again (a concurrent duplicate
   may have committed while we waited) and the slot `next_seq` is opened and marked used;
3. the allocation number (a trial-wide counter, also locked), the allocation row
   (record is its primary key), the audit entry and the `Allocated` event are written in
   the same transaction. Lock order is always list → stratum → number → audit chain, so
   concurrent allocations queue per stratum and never deadlock.

Whatever unblinds (cluster, arm, stratum, slot) is sealed with the list key in the
allocation row; the audit chain gets only a salted SHA-256 digest of it (an unsalted
digest of one of three clusters would be reversed by trying them).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.core import audit, outbox
from services.core.errors import Conflict, InvalidInput, NotFound
from services.core.events import Allocated, EmergencyUnblinded
from services.core.internal_token import Caller
from services.core.protocol import Arm, Cluster, RandomizationDesign, TrialProtocol
from services.core.sealing import Recipient

from . import repository
from .domain import (
    ListDesign,
    ListImportError,
    OpenedSlot,
    RandomizationError,
    SealedSlot,
    SealError,
    build_design,
    pilot_module,
    stratum_of,
    unseal_slot,
)
from .domain.design import SEPARATOR, treatment_for
from .domain.errors import NotInDesignError
from .domain.minimization import check_levels, next_decision
from .keys import ListKey, SealedDataError
from .models import AllocationRow, RandomizationList, SealedSlotRow, StratumCounter

log = structlog.get_logger(__name__)

SERVICE = "randomization"
DETAIL = "tailor.allocation-detail/1"
NUMBER_COUNTER = "allocation_number"
SEED = "tailor.list-seed/1"  # the sealing context of a list's seed


class NoSealedList(Conflict):
    """No list allocates: none sealed yet, or the trial is closed."""


class StratumExhausted(Conflict):
    """The participant's stratum has no free slot: the statistician must extend it."""


class AllocationRace(Conflict):
    """A concurrent transaction allocated the same record first; retrying returns it."""


class ListKeyMismatch(Conflict):
    """The list was sealed with another key than this process holds."""


@dataclass(frozen=True)
class Actor:
    name: str
    role: str

    @classmethod
    def of(cls, caller: Caller) -> Actor:
        return cls(caller.subject, caller.role.value)


def invalid(err: RandomizationError) -> InvalidInput:
    return InvalidInput(str(err), field=err.field)


class InvalidList(InvalidInput):
    """An imported list's defects: all of them, with row and column, in the problem's
    `errors` (the detail shows the first few)."""

    title = "Invalid randomization list"

    def __init__(self, err: ListImportError) -> None:
        super().__init__(str(err), field=err.field or "body")
        self.problems = err.problems

    def extensions(self) -> dict[str, Any]:
        return {"errors": [{"row": p.row, "column": p.column, "message": p.message}
                           for p in self.problems]}


def design_snapshot(protocol: TrialProtocol) -> dict[str, Any]:
    """What a list is made from, kept with it: a later protocol edit never changes a list."""
    return {"randomization": protocol.randomization.model_dump(mode="json"),
            "clusters": [c.model_dump(mode="json") for c in protocol.clusters],
            "modules": list(protocol.module_keys),
            "arms": [a.model_dump(mode="json") for a in protocol.arms]}


def design_from_snapshot(snapshot: dict[str, Any]) -> ListDesign:
    # Snapshots made before arms were kept have none: they are all personalized (PerPAIN).
    return build_design(RandomizationDesign.model_validate(snapshot["randomization"]),
                        [Cluster.model_validate(c) for c in snapshot["clusters"]],
                        snapshot["modules"],
                        [Arm.model_validate(a) for a in snapshot.get("arms", [])])


@dataclass
class Context:
    """What use cases need beyond the session: the key, the protocol, cached designs."""

    key: ListKey
    protocol: TrialProtocol
    producer: str = SERVICE
    # SMART: the gateway's public bus key, to which each stage's option is sealed.
    seal_to_gateway: Recipient | None = None
    _designs: dict[str, ListDesign] = field(default_factory=dict, repr=False)
    # Per minimization list, after a commit: (decisions, last record, every (levels, arm)),
    # so a decision need not unseal all earlier ones; checked against the database first.
    _decided: dict[str, tuple[int, str, list[tuple[dict[str, str], str]]]] = field(
        default_factory=dict, repr=False)

    def design_of(self, lst: RandomizationList) -> ListDesign:
        design = self._designs.get(lst.id)
        if design is None:
            design = self._designs[lst.id] = design_from_snapshot(json.loads(lst.design))
        return design

    def check_key(self, lst: RandomizationList) -> None:
        if lst.key_id != self.key.key_id:
            raise ListKeyMismatch(f"list {lst.id} was sealed with key {lst.key_id}, this "
                                  f"process holds {self.key.key_id}", field="list_key")


@dataclass(frozen=True)
class Disclosure:
    """What unblinds one allocation; sealed in its row, shown only to unblinded roles."""

    cluster: str | None  # None: the design does not personalize
    arm: str
    stratum: str
    seq: int | None  # None: pilot participant, no slot used; minimization: decision number
    batch: int | None
    salt: str
    # Minimization only: the participant's factor levels and the decision (imbalance score
    # per arm, the preferred arms, whether the random element followed the preference).
    levels: dict[str, str] | None = None
    decision: dict[str, Any] | None = None
    # Group randomization only: the group whose slot this is (a member inherits its arm).
    group: str | None = None

    def body(self) -> dict[str, Any]:
        """What is sealed and digested; a blocks allocation keeps its original six keys."""
        return {k: v for k, v in self.__dict__.items()
                if v is not None or k not in ("levels", "decision", "group")}

    def digest(self, record: str, number: str) -> str:
        body = {"record": record, "allocation_number": number, **self.body()}
        return hashlib.sha256(audit.canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True)
class AllocationRequest:
    record: str
    cluster: str | None
    site: str | None
    pilot: bool
    source: str  # event | manual
    actor: Actor
    correlation_id: str | None = None
    reason: str | None = None
    model_version: str | None = None
    low_confidence: bool | None = None
    # The participant's level of each stratification factor (site may come as `site`).
    levels: dict[str, str] | None = None

    def factor_levels(self) -> dict[str, str]:
        known = {"cluster": self.cluster, "site": self.site}
        return {**{k: v for k, v in known.items() if v is not None}, **(self.levels or {})}


def allocate(session: Session, ctx: Context, req: AllocationRequest) -> tuple[AllocationRow, bool]:
    """The record's allocation and whether it was made now (False: it existed already)."""
    existing = repository.allocation(session, req.record)
    if existing is not None:
        return existing, False
    lst = repository.active_list(session, share_lock=True)
    if lst is None:
        raise NoSealedList("no sealed randomization list: the statistician must generate "
                           "and seal one first", field="list")
    ctx.check_key(lst)
    design = ctx.design_of(lst)
    if design.group is not None:  # one by one would break the groups apart
        raise InvalidInput("group randomization: a participant is allocated when their group "
                           "is closed (POST /v1/groups/{group_id}/close)", field="record")
    if design.minimization is not None:
        minimized = _minimize(session, ctx, lst, design, req)
        if isinstance(minimized, AllocationRow):
            return minimized, False
        return _record_allocation(session, ctx, lst, req, *minimized), True
    try:
        if design.personalized:
            if req.cluster is None:
                raise NotInDesignError("the design personalizes: the participant's cluster "
                                       "is required", field="cluster")
            stratum = stratum_of(design, req.cluster, req.site)
        else:
            stratum = design.stratum_for_levels(req.factor_levels()).key
    except RandomizationError as err:
        raise invalid(err) from None
    if req.pilot:
        if req.cluster is None:
            raise InvalidInput("a pilot participant gets the module matching their cluster; "
                               "this design has no clusters", field="pilot")
        module = pilot_module(design, req.cluster)
        disclosure = Disclosure(req.cluster, design.stratum(stratum).arm_of(module), stratum,
                                None, None, secrets.token_hex(16))
    else:
        taken = _take_slot(session, ctx, lst, stratum, req)
        if isinstance(taken, AllocationRow):
            return taken, False
        module, disclosure = taken
    return _record_allocation(session, ctx, lst, req, module, disclosure), True


def decision_counter(list_id: str) -> str:
    """The named counter of a minimization list's decisions (made with the list)."""
    return f"minimization:{list_id}"


def _minimize(session: Session, ctx: Context, lst: RandomizationList, design: ListDesign,
              req: AllocationRequest) -> AllocationRow | tuple[str, Disclosure]:
    """The next minimization decision, serialized by the list's decision counter: the
    counter row is locked (PostgreSQL) or the database is (SQLite, BEGIN IMMEDIATE), the
    record is looked up again, the marginals are rebuilt from every earlier allocation's
    sealed levels and arm, and decision n draws from block n of the sealed seed."""
    m = design.minimization
    if m is None:
        raise AssertionError("unreachable: called for minimization designs only")
    if req.pilot:
        raise InvalidInput("pilot participants are not part of a minimization design",
                           field="pilot")
    levels = {f.name: v for f in m.factors if (v := req.factor_levels().get(f.name)) is not None}
    try:
        check_levels(m, levels)
    except RandomizationError as err:
        raise invalid(err) from None
    counter = repository.lock_named_counter(session, decision_counter(lst.id))
    if counter is None:  # made with the list: the database was altered
        raise Conflict("the minimization list has no decision counter", field="list")
    again = repository.allocation(session, req.record)  # a duplicate that won the lock
    if again is not None:
        return again
    past = _decided_before(session, ctx, lst.id, counter.value)
    counter.value += 1
    session.add(counter)
    n = counter.value
    seed = ctx.key.open(SEED, (lst.id,), lst.seed_sealed)
    decision = next_decision(m, seed, n, past, levels)
    done = (n, req.record, [*past, (levels, decision.arm)])
    # Cached only once committed: a rolled-back decision never enters the cache.
    event.listen(session, "after_commit", lambda _s: ctx._decided.__setitem__(lst.id, done),
                 once=True)
    stratum = SEPARATOR.join(levels[f.name] for f in m.factors)
    return treatment_for(design, decision.arm), Disclosure(
        None, decision.arm, stratum, n, None, secrets.token_hex(16), levels,
        {"scores": decision.scores, "preferred": list(decision.preferred),
         "followed_preference": decision.followed_preference})


def _decided_before(session: Session, ctx: Context, list_id: str,
                    made: int) -> list[tuple[dict[str, str], str]]:
    """Every earlier decision's (levels, arm). The cache holds if it counts `made` decisions
    and its last record is in the database as decision `made` of this list (a cache entry
    of a transaction whose savepoint was undone cannot pass both)."""
    cached = ctx._decided.get(list_id)
    if cached is not None and cached[0] == made:
        if made == 0:
            return list(cached[2])
        row = repository.allocation(session, cached[1])
        if row is not None and row.list_id == list_id and disclose(ctx, row).seq == made:
            return list(cached[2])
    past = []
    for row in repository.allocations(session, list_ids=[list_id]):
        if not row.pilot:
            d = disclose(ctx, row)
            past.append((d.levels or {}, d.arm))
    return past


def _take_slot(session: Session, ctx: Context, lst: RandomizationList, stratum: str,
               req: AllocationRequest) -> AllocationRow | tuple[str, Disclosure]:
    counter = lock_stratum(session, ctx, lst, stratum, field="cluster")
    again = repository.allocation(session, req.record)
    if again is not None:
        return again
    opened, row = take_next_slot(session, ctx, lst, counter, stratum,
                                 tag=ctx.key.participant_tag(lst.id, req.record), field="cluster")
    slot = opened.slot
    return slot.module, Disclosure(req.cluster, slot.arm, stratum, slot.seq, row.batch,
                                   secrets.token_hex(16))


def lock_stratum(session: Session, ctx: Context, lst: RandomizationList, stratum: str, *,
                 field: str) -> StratumCounter:
    """The stratum's counter, locked: whoever holds it takes the stratum's next slot. A
    duplicate request checks for its allocation after this lock, never before."""
    counter = repository.lock_counter(session, lst.id, ctx.key.stratum_ref(lst.id, stratum))
    if counter is None:
        raise InvalidInput("the sealed list has no counter for this stratum", field=field)
    return counter


def take_next_slot(session: Session, ctx: Context, lst: RandomizationList, counter: StratumCounter,
                   stratum: str, *, tag: str, field: str) -> tuple[OpenedSlot, SealedSlotRow]:
    """Open the locked stratum's next slot with the list key and mark it used by `tag`."""
    if counter.next_seq > counter.last_seq:
        # No stratum name here: this message reaches logs next to the record id.
        raise StratumExhausted("the stratum has no free slot left; the statistician must "
                               "extend it", field=field)
    row = repository.slot(session, lst.id, counter.stratum_ref, counter.next_seq)
    if row is None or row.used_by is not None:
        raise Conflict("the list's next slot is missing or already used: the list is "
                       "inconsistent", field="list")
    try:
        opened = unseal_slot(SealedSlot(stratum, row.seq, row.nonce, row.ciphertext, row.leaf),
                             key=ctx.key.material, list_id=lst.id)
    except SealError:
        raise Conflict("the next slot does not open with this key: altered, moved or sealed "
                       "with another key", field="list") from None
    row.used_by = tag
    counter.next_seq += 1
    session.add(row)
    session.add(counter)
    return opened, row


def format_number(protocol: TrialProtocol, n: int) -> str:
    r = protocol.randomization
    return f"{r.allocation_number_prefix}{n:0{r.allocation_number_digits}d}"


def _record_allocation(session: Session, ctx: Context, lst: RandomizationList,
                       req: AllocationRequest, module: str, disclosure: Disclosure) -> AllocationRow:
    number = format_number(ctx.protocol, repository.next_counter(session, NUMBER_COUNTER))
    now = datetime.now(UTC)
    plain = audit.canonical_json(disclosure.body()).encode()
    row = AllocationRow(
        record=req.record, allocation_number=number, module=module, list_id=lst.id,
        pilot=req.pilot, sealed_detail=ctx.key.seal(DETAIL, (lst.id, req.record, number), plain),
        detail_digest=disclosure.digest(req.record, number), source=req.source,
        allocated_by=req.actor.name, allocated_at=now, correlation_id=req.correlation_id,
        reason=req.reason)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise AllocationRace(f"record {req.record} was allocated concurrently; ask again",
                             field="record") from None
    audit.append(session, actor=req.actor.name, role=req.actor.role, action="allocation.created",
                 entity_type="allocation", entity_id=number, record=req.record, reason=req.reason,
                 correlation_id=req.correlation_id,
                 after={"allocation_number": number, "module": module, "list_id": lst.id,
                        "source": req.source, "detail_digest": row.detail_digest,
                        "model_version": req.model_version, "low_confidence": req.low_confidence})
    outbox.enqueue(session, Allocated(record=req.record, allocation_number=number, module=module,
                                      allocated_at=now),
                   producer=ctx.producer, correlation_id=req.correlation_id, record=req.record)
    log.info("allocation.created", record=req.record, allocation_number=number, module=module,
             source=req.source)
    return row


# ── unblinded reads ─────────────────────────────────────────────────────────────────


def disclose(ctx: Context, row: AllocationRow) -> Disclosure:
    try:
        plain = ctx.key.open(DETAIL, (row.list_id, row.record, row.allocation_number),
                             row.sealed_detail)
    except SealedDataError:
        raise Conflict(f"the sealed detail of allocation {row.allocation_number} does not open: "
                       "another key, or the row was altered", field="record") from None
    return Disclosure(**json.loads(plain))


def allocation_of(session: Session, record: str) -> AllocationRow:
    row = repository.allocation(session, record)
    if row is None:
        raise NotFound(f"record {record} has no allocation", field="record")
    return row


def unblinded(session: Session, ctx: Context, *, record: str,
              actor: Actor) -> tuple[AllocationRow, Disclosure]:
    """One participant's allocation with arm and cluster; the read is audited."""
    row = allocation_of(session, record)
    disclosure = disclose(ctx, row)
    audit.append(session, actor=actor.name, role=actor.role, action="allocation.unblinded_read",
                 entity_type="allocation", entity_id=row.allocation_number, record=record)
    return row, disclosure


def unblinded_all(session: Session, ctx: Context, *,
                  actor: Actor) -> list[tuple[AllocationRow, Disclosure]]:
    """Every allocation with arm and cluster (DSMB report); the read is audited."""
    rows = repository.allocations(session)
    audit.append(session, actor=actor.name, role=actor.role, action="allocations.unblinded_listed",
                 entity_type="allocation", entity_id="*", after={"allocations": len(rows)})
    return [(row, disclose(ctx, row)) for row in rows]


def emergency_unblind(session: Session, ctx: Context, *, record: str, reason: str, actor: Actor,
                      correlation_id: str | None) -> tuple[AllocationRow, Disclosure]:
    """Unblind ONE participant in an emergency: reason required, audited, announced."""
    if not reason.strip():
        raise InvalidInput("a reason is required for emergency unblinding", field="reason")
    row = allocation_of(session, record)
    disclosure = disclose(ctx, row)
    now = datetime.now(UTC)
    audit.append(session, actor=actor.name, role=actor.role,
                 action="allocation.emergency_unblinded", entity_type="allocation",
                 entity_id=row.allocation_number, record=record, reason=reason,
                 correlation_id=correlation_id,
                 after={"allocation_number": row.allocation_number,
                        "detail_digest": row.detail_digest})
    outbox.enqueue(session, EmergencyUnblinded(
        record=record, allocation_number=row.allocation_number, unblinded_by=actor.name,
        role=actor.role, reason=reason, at=now),
        producer=ctx.producer, correlation_id=correlation_id, record=record)
    log.warning("allocation.emergency_unblinded", record=record, by=actor.name)
    return row, disclosure
