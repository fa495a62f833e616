"""After a restore from backup: give back the allocations the database lost, from the bus.

A database restored from a backup has lost every allocation made after the backup, while
REDCap, the other services and the TRIAL stream still hold them. Started like that, the
service would hand the lost allocations' slots and numbers to the next participants.

The stream is the record of what was handed out: each `allocated` event (record, number,
module) and the `cluster_assigned` event that caused it (cluster, site, pilot; sealed to
this service's bus key). Within a stratum, slots are taken strictly in allocation-number
order (the stratum's counter lock is taken before the number's), so replaying the lost
allocations in number order takes back exactly the slots they had; each re-taken slot
must open to the module the event says, or nothing is changed. The rows get the original
number and time, an audit entry each (`allocation.restored`), and no new event (the fact
is on the bus already). Then every `cluster_assigned` of a record that has neither an
allocation nor a parked request (a request parked after the backup, or not yet delivered)
goes through the ordinary handler, as a redelivery would.

All or nothing, in one transaction: an allocation that cannot be re-derived (a manual
one: its cluster is not on the bus) or that contradicts the database stops the whole
reconciliation with a message naming the record; fields only, never a cluster or arm.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlmodel import Session, select

from services.core import audit, inbox
from services.core.errors import Conflict
from services.core.events import Allocated, ClusterAssigned, Envelope, SealedCluster
from services.core.sealed_events import validated
from services.core.sealing import Keyring

from . import parking, repository, service
from .domain import RandomizationError, SealedSlot, SealError, pilot_module, stratum_of, unseal_slot
from .handlers import DURABLE
from .models import AllocationRow, NamedCounter, ParkedAllocation
from .service import DETAIL, NUMBER_COUNTER, Actor, AllocationRequest, Context, Disclosure

log = structlog.get_logger(__name__)

ACTOR = "restore:reconcile"


class NotRecoverable(Conflict):
    """The bus and the restored database disagree, or an allocation cannot be re-derived."""


@dataclass(frozen=True)
class Assignment:
    """One opened `cluster_assigned` event (the cluster is unblinding data: never shown)."""

    envelope: Envelope
    event: ClusterAssigned
    cluster: str


def open_assignment(env: Envelope, keyring: Keyring) -> Assignment:
    """Open a `cluster_assigned` event with this service's bus key (as the consumer does;
    payloads from before sealing carry the cluster in clear)."""
    data = dict(env.data)
    if "sealed" not in data and "cluster" in data:
        clear = validated(SealedCluster, {k: data.pop(k, None) for k in
                                          ("cluster", "probabilities")},
                          what="cluster_assigned payload")
        data["sealed"] = ""
        return Assignment(env, validated(ClusterAssigned, data, what="cluster_assigned payload"),
                          clear.cluster)
    event = validated(ClusterAssigned, data, what="cluster_assigned payload")
    clear = validated(SealedCluster, keyring.open_json(
        event.sealed, subject=ClusterAssigned.subject, record=event.record),
        what="sealed cluster")
    return Assignment(env, event, clear.cluster)


@dataclass
class Findings:
    """What the stream holds that the database does not (and what contradicts it)."""

    on_stream: int = 0  # distinct allocations on the stream
    in_database: int = 0
    lost: list[Envelope] = field(default_factory=list)  # allocated events, number order
    underivable: list[str] = field(default_factory=list)  # records: no cluster on the bus
    conflicts: list[str] = field(default_factory=list)  # one line each, names fields only
    waiting: list[Assignment] = field(default_factory=list)  # neither allocated nor parked
    gap: str | None = None  # why the stream may no longer hold what the backup lacks

    @property
    def clean(self) -> bool:
        return not (self.lost or self.waiting or self.underivable or self.conflicts or self.gap)


def _number(protocol_prefix: str, number: str) -> int:
    digits = number.removeprefix(protocol_prefix)
    if not digits.isdigit():
        raise NotRecoverable(f"allocation number {number} does not have the protocol's format",
                             field="allocation_number")
    return int(digits)


def inspect(session: Session, ctx: Context, allocated: Sequence[Envelope],
            assigned: Sequence[Assignment], stream_starts: datetime | None = None) -> Findings:
    """Compare the stream's allocations (in stream order) with the database; changes nothing.
    `stream_starts`: when the stream's oldest kept message was stored (None: empty stream)."""
    prefix = ctx.protocol.randomization.allocation_number_prefix
    rows = repository.allocations(session)
    found = Findings(in_database=len(rows))
    newest = rows[-1].allocated_at if rows else None
    if stream_starts is not None and newest is not None and stream_starts > newest:
        # What was allocated between the backup's newest allocation and the stream's start
        # has aged out of the stream (the protocol's data_retention.bus_days).
        found.gap = (f"the stream starts at {stream_starts.isoformat()}, after the database's "
                     f"newest allocation ({newest.isoformat()}): allocations in between cannot "
                     "be seen; restore a newer backup")
    by_record: dict[str, Envelope] = {}
    for env in allocated:
        fact = env.payload(Allocated)
        seen = by_record.get(fact.record)
        if seen is not None:  # a republished event: the same fact, or a contradiction
            first = seen.payload(Allocated)
            if (first.allocation_number, first.module) != (fact.allocation_number, fact.module):
                found.conflicts.append(f"record {fact.record}: two allocated events with "
                                       "different allocation_number or module")
            continue
        by_record[fact.record] = env
    found.on_stream = len(by_record)
    numbers = {row.allocation_number: row.record for row in repository.allocations(session)}
    first_assignment: dict[str, Assignment] = {}
    for a in assigned:
        first_assignment.setdefault(a.event.record, a)
    lost: list[tuple[int, Envelope]] = []
    for record, env in by_record.items():
        fact = env.payload(Allocated)
        row = repository.allocation(session, record)
        if row is not None:
            if (row.allocation_number, row.module) != (fact.allocation_number, fact.module):
                found.conflicts.append(f"record {record}: the database's allocation_number or "
                                       "module differs from the stream's")
            continue
        holder = numbers.get(fact.allocation_number)
        if holder is not None:
            found.conflicts.append(f"record {record}: its allocation_number is held by record "
                                   f"{holder} in the database")
            continue
        if record not in first_assignment:
            found.underivable.append(record)
            continue
        lost.append((_number(prefix, fact.allocation_number), env))
    found.lost = [env for _, env in sorted(lost, key=lambda pair: pair[0])]
    restored = {env.payload(Allocated).record for env in found.lost}
    for record, a in first_assignment.items():
        if record in by_record or record in restored:
            continue
        if repository.allocation(session, record) is None and \
                session.get(ParkedAllocation, record) is None:
            found.waiting.append(a)
    return found


def _restore_one(session: Session, ctx: Context, env: Envelope, a: Assignment) -> None:
    fact = env.payload(Allocated)
    lst = repository.active_list(session, share_lock=True)
    if lst is None:
        raise NotRecoverable("the restored database has no sealed list: restore a backup "
                             "taken after the list was sealed", field="list")
    ctx.check_key(lst)
    design = ctx.design_of(lst)
    try:
        stratum = stratum_of(design, a.cluster, a.event.site)
    except RandomizationError as err:
        raise NotRecoverable(f"record {fact.record}: {err}", field=err.field) from None
    if a.event.pilot:
        module = pilot_module(design, a.cluster)
        disclosure = Disclosure(a.cluster, design.stratum(stratum).arm_of(module), stratum,
                                None, None, _salt())
    else:
        counter = repository.lock_counter(session, lst.id, ctx.key.stratum_ref(lst.id, stratum))
        row = None if counter is None else repository.slot(session, lst.id, counter.stratum_ref,
                                                           counter.next_seq)
        if counter is None or row is None or row.used_by is not None:
            raise NotRecoverable(f"record {fact.record}: its stratum has no free slot to take "
                                 "back (the list was changed after the backup?)", field="list")
        try:
            opened = unseal_slot(SealedSlot(stratum, row.seq, row.nonce, row.ciphertext,
                                            row.leaf), key=ctx.key.material, list_id=lst.id)
        except SealError:
            raise NotRecoverable("a slot does not open with this list key", field="list") from None
        module = opened.slot.module
        row.used_by = ctx.key.participant_tag(lst.id, fact.record)
        counter.next_seq += 1
        session.add(row)
        session.add(counter)
        disclosure = Disclosure(a.cluster, opened.slot.arm, stratum, opened.slot.seq, row.batch,
                                _salt())
    if module != fact.module:
        raise NotRecoverable(f"record {fact.record}: the slot its stratum gives back is not the "
                             "module the stream says; the stream and this backup do not fit",
                             field="module")
    _write_row(session, ctx, lst.id, env, a, disclosure)


def _salt() -> str:
    return secrets.token_hex(16)


def _write_row(session: Session, ctx: Context, list_id: str, env: Envelope, a: Assignment,
               disclosure: Disclosure) -> None:
    fact = env.payload(Allocated)
    plain = audit.canonical_json(disclosure.__dict__).encode()
    row = AllocationRow(
        record=fact.record, allocation_number=fact.allocation_number, module=fact.module,
        list_id=list_id, pilot=a.event.pilot,
        sealed_detail=ctx.key.seal(DETAIL, (list_id, fact.record, fact.allocation_number), plain),
        detail_digest=disclosure.digest(fact.record, fact.allocation_number), source="event",
        allocated_by=f"event:{a.envelope.producer}", allocated_at=fact.allocated_at,
        correlation_id=env.correlation_id, reason="restored from the bus after a restore")
    session.add(row)
    session.flush()
    inbox.claim(session, DURABLE, a.envelope.id)  # a late redelivery is then a duplicate
    audit.append(session, actor=ACTOR, role="system", action="allocation.restored",
                 entity_type="allocation", entity_id=fact.allocation_number, record=fact.record,
                 correlation_id=env.correlation_id,
                 after={"allocation_number": fact.allocation_number, "module": fact.module,
                        "list_id": list_id, "detail_digest": row.detail_digest,
                        "event_id": env.id})
    log.info("allocation.restored", record=fact.record, allocation_number=fact.allocation_number)


def _raise_number_counter(session: Session, ctx: Context, restored: Sequence[Envelope]) -> None:
    prefix = ctx.protocol.randomization.allocation_number_prefix
    highest = max(_number(prefix, env.payload(Allocated).allocation_number) for env in restored)
    counter = session.exec(select(NamedCounter).where(NamedCounter.name == NUMBER_COUNTER)
                           .with_for_update()).first() or NamedCounter(name=NUMBER_COUNTER, value=0)
    counter.value = max(counter.value, highest)
    session.add(counter)


@dataclass(frozen=True)
class Reconciled:
    restored: list[str]  # records, allocation-number order
    redelivered: list[str]


def _redeliver(session: Session, ctx: Context, a: Assignment) -> None:
    """What the consumer does with the event: allocate now, or park it until a list can."""
    env, event = a.envelope, a.event
    request = AllocationRequest(
        record=event.record, cluster=a.cluster, site=event.site, pilot=event.pilot,
        source="event", actor=Actor(f"event:{env.producer}", "system"),
        correlation_id=env.correlation_id or env.id, model_version=event.model_version,
        low_confidence=event.low_confidence)
    try:
        with session.begin_nested():
            service.allocate(session, ctx, request)
    except parking.WAITING as err:
        parking.park(session, ctx, request, err)


def reconcile(session: Session, ctx: Context, allocated: Sequence[Envelope],
              assigned: Sequence[Assignment],
              stream_starts: datetime | None = None) -> Reconciled:
    """Give back the lost allocations, then allocate or park the waiting requests as the
    consumer would. Never commits; raises NotRecoverable (the caller rolls back)."""
    found = inspect(session, ctx, allocated, assigned, stream_starts)
    if found.gap:
        raise NotRecoverable(found.gap, field="backup")
    if found.conflicts:
        raise NotRecoverable("; ".join(found.conflicts), field="record")
    if found.underivable:
        raise NotRecoverable(
            f"no cluster_assigned event on the bus for {', '.join(sorted(found.underivable))} "
            "(manual allocations, or older than the stream keeps): restore a newer backup, or "
            "re-enter them by hand before reopening", field="record")
    by_record: dict[str, Assignment] = {}
    for a in assigned:
        by_record.setdefault(a.event.record, a)
    for env in found.lost:
        _restore_one(session, ctx, env, by_record[env.payload(Allocated).record])
    if found.lost:
        _raise_number_counter(session, ctx, found.lost)
    redelivered: list[str] = []
    for a in found.waiting:
        # As the consumer would: once per event id (an id in the inbox had its effect).
        if inbox.claim(session, DURABLE, a.envelope.id):
            _redeliver(session, ctx, a)
            redelivered.append(a.event.record)
    return Reconciled([env.payload(Allocated).record for env in found.lost], redelivered)


def describe(found: Findings) -> list[str]:
    """Lines for a person: counts and records, never a cluster or an arm."""
    lines = [f"allocations on the stream: {found.on_stream}; in the database: {found.in_database}"]
    if found.lost:
        lines.append(f"lost by the restore, to give back: {len(found.lost)} ("
                     + ", ".join(e.payload(Allocated).record for e in found.lost) + ")")
    if found.waiting:
        lines.append(f"requests neither allocated nor waiting: {len(found.waiting)} ("
                     + ", ".join(a.event.record for a in found.waiting) + ")")
    lines += [f"cannot be re-derived (no cluster on the bus): {r}" for r in found.underivable]
    lines += [f"conflict: {c}" for c in found.conflicts]
    if found.gap:
        lines.append(f"gap: {found.gap}")
    if found.clean:
        lines.append("database and stream agree")
    return lines


def json_summary(found: Findings) -> str:
    return json.dumps({"on_stream": found.on_stream, "in_database": found.in_database,
                       "lost": [e.payload(Allocated).record for e in found.lost],
                       "waiting": [a.event.record for a in found.waiting],
                       "underivable": found.underivable, "conflicts": found.conflicts,
                       "gap": found.gap})
