"""Group randomization use cases: members join, staff close a group, late joiners wait for
review. Take a session and keyword arguments; never commit.

Exactly once, on any number of replicas:
- a record joins once: `group_member` has the record as primary key; a redelivered save
  finds it and changes nothing;
- a group is randomized once: closing locks the group row (`SELECT … FOR UPDATE`; SQLite's
  BEGIN IMMEDIATE serializes anyway) and a second close finds it closed (409). Lock order
  is list (shared) → group → stratum → allocation number → audit chain; joining takes the
  group row only, so joins and closes queue per group and never deadlock;
- every member is allocated once, in the closing transaction, through the same
  allocation rows, audit entries and `Allocated` events as any participant (the gateway
  writes them back to REDCap).

The group's arm, stratum and slot are sealed with the list key in the group row (as an
allocation's detail is); the audit chain gets only their salted digest. Blinded callers
get the group's members, allocation numbers and module, never the arm or the stratum.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.core import audit
from services.core.errors import Conflict, InvalidInput, NotFound

from . import repository, service
from .domain import RandomizationError
from .domain.design import ListDesign, design_from_protocol
from .domain.group import (
    GroupClosed,
    GroupDesign,
    GroupStatus,
    GroupTooSmall,
    JoinOutcome,
    MemberStatus,
    UnknownGroup,
    check_closable,
    check_group_id,
    join_outcome,
    slot_user,
)
from .keys import SealedDataError
from .models import (
    AllocationRow,
    GroupMember,
    RandomizationGroup,
    RandomizationList,
)
from .service import Actor, AllocationRequest, Context, Disclosure

log = structlog.get_logger(__name__)

LEVELS = "tailor.group-levels/1"  # sealing context of a group's stratum levels
GROUP_DETAIL = "tailor.group-detail/1"  # … of a closed group's arm, stratum and slot


class GroupRace(Conflict):
    """A concurrent transaction founded the same group or added the same member first."""


def _protocol_design(ctx: Context) -> tuple[ListDesign, GroupDesign]:
    design = design_from_protocol(ctx.protocol)
    if design.group is None:
        raise InvalidInput("the protocol's design does not randomize groups",
                           field="randomization.method")
    return design, design.group


def _lock_group(session: Session, group_id: str) -> RandomizationGroup | None:
    return session.exec(select(RandomizationGroup).where(col(RandomizationGroup.id) == group_id)
                        .with_for_update().execution_options(populate_existing=True)).first()


def members_of(session: Session, group_id: str) -> list[GroupMember]:
    return list(session.exec(select(GroupMember).where(col(GroupMember.group_id) == group_id)
                             .order_by(col(GroupMember.joined_at), col(GroupMember.record))
                             .execution_options(populate_existing=True)))


def _levels(ctx: Context, group: RandomizationGroup) -> dict[str, str]:
    return cast(dict[str, str], json.loads(ctx.key.open(LEVELS, (group.id,), group.sealed_levels)))


# ── joining (from the baseline save) ────────────────────────────────────────────────


def join(session: Session, ctx: Context, *, record: str, group_id: str, levels: dict[str, str],
         actor: Actor, correlation_id: str | None) -> JoinOutcome:
    """A participant whose baseline is complete joins their group (founding it if new)."""
    design, gd = _protocol_design(ctx)
    try:
        check_group_id(group_id, field=gd.group_field)
        stratum = design.stratum_for_levels(levels).key
    except RandomizationError as err:
        raise service.invalid(err) from None
    if session.get(GroupMember, record) is not None:
        return JoinOutcome.ALREADY
    group = _lock_group(session, group_id)
    now = datetime.now(UTC)
    if group is None:
        group = RandomizationGroup(
            id=group_id, status=GroupStatus.OPEN, opened_at=now,
            sealed_levels=ctx.key.seal(LEVELS, (group_id,), json.dumps(levels).encode()))
        session.add(group)
        _flush(session, f"group {group_id} was founded concurrently; ask again")
        outcome = JoinOutcome.JOINED
    else:
        again = session.exec(select(GroupMember).where(col(GroupMember.record) == record)
                             .execution_options(populate_existing=True)).first()
        if again is not None:  # a duplicate that committed while we waited for the lock
            return JoinOutcome.ALREADY
        joined = [m for m in members_of(session, group_id) if m.status != MemberStatus.REVIEW]
        group_stratum = design.stratum_for_levels(_levels(ctx, group)).key
        outcome = join_outcome(already_member=False, status=GroupStatus(group.status),
                               members=len(joined), group_stratum=group_stratum,
                               member_stratum=stratum, design=gd)
    held = outcome is not JoinOutcome.JOINED
    session.add(GroupMember(record=record, group_id=group_id, joined_at=now,
                            status=MemberStatus.REVIEW if held else MemberStatus.MEMBER,
                            review_reason=outcome.value if held else None))
    _flush(session, f"record {record} joined a group concurrently; ask again")
    action = "group.member_held_for_review" if held else "group.member_joined"
    audit.append(session, actor=actor.name, role=actor.role, action=action, entity_type="group",
                 entity_id=group_id, record=record, correlation_id=correlation_id,
                 after={"group": group_id, "outcome": outcome.value})
    # Never the stratum here: the reason is one of joined / late / full / other_stratum.
    log.log(30 if held else 20, action, record=record, group=group_id, outcome=outcome.value)
    return outcome


def _flush(session: Session, race: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise GroupRace(race, field="record") from None


def withdraw(session: Session, ctx: Context, *, record: str, actor: Actor,
             correlation_id: str | None) -> bool:
    """A member who withdraws before their group is closed is not allocated with it (one
    who withdraws later keeps the allocation: a withdrawal, not an undoing). True if the
    membership changed."""
    member = session.get(GroupMember, record)
    if member is None:
        return False
    _lock_group(session, member.group_id)  # serialized with a close of that group
    session.refresh(member)
    if member.status not in (MemberStatus.MEMBER, MemberStatus.REVIEW):
        return False
    member.status = MemberStatus.WITHDRAWN
    session.add(member)
    audit.append(session, actor=actor.name, role=actor.role, action="group.member_withdrawn",
                 entity_type="group", entity_id=member.group_id, record=record,
                 correlation_id=correlation_id, after={"group": member.group_id})
    log.info("group.member_withdrawn", record=record, group=member.group_id)
    return True


# ── closing: the group is randomized, its members inherit its arm ────────────────────


@dataclass(frozen=True)
class ClosedGroup:
    group: RandomizationGroup
    allocations: list[AllocationRow]
    disclosure: Disclosure


def close(session: Session, ctx: Context, *, group_id: str, actor: Actor, reason: str | None,
          correlation_id: str | None) -> ClosedGroup:
    """Randomize a group: its stratum's next group slot; every member gets its arm."""
    try:
        check_group_id(group_id)
    except RandomizationError as err:
        raise service.invalid(err) from None
    lst = repository.active_list(session, share_lock=True)
    if lst is None:
        raise service.NoSealedList("no sealed randomization list: the statistician must "
                                   "generate and seal one first", field="list")
    ctx.check_key(lst)
    design = ctx.design_of(lst)
    if design.group is None:
        raise Conflict("the sealed list does not randomize groups", field="list")
    group = _lock_group(session, group_id)
    members = [m for m in members_of(session, group_id) if m.status == MemberStatus.MEMBER] \
        if group is not None else []
    try:
        check_closable(group_id, status=GroupStatus(group.status) if group else None,
                       members=len(members), design=design.group)
    except UnknownGroup as err:
        raise NotFound(str(err), field="group_id") from None
    except (GroupClosed, GroupTooSmall) as err:
        raise Conflict(str(err), field="group_id") from None
    assert group is not None  # check_closable refused an unknown group
    levels = _levels(ctx, group)
    try:
        stratum = design.stratum_for_levels(levels).key
    except RandomizationError as err:
        raise service.invalid(err) from None
    slot_req = AllocationRequest(record=slot_user(group_id), cluster=None, site=None,
                                 pilot=False, source="group", actor=actor)
    taken = service._take_slot(session, ctx, lst, stratum, slot_req)
    if isinstance(taken, AllocationRow):  # a record named like a group tag: never allocated
        raise Conflict("a participant record carries the group's slot tag", field="group_id")
    module, slot = taken  # the slot's arm, seq and batch (its detail as a participant's)
    disclosure = Disclosure(None, slot.arm, stratum, slot.seq, slot.batch,
                            secrets.token_hex(16), group=group_id)
    now = datetime.now(UTC)
    plain = audit.canonical_json(disclosure.body()).encode()
    group.status, group.list_id, group.module = GroupStatus.CLOSED, lst.id, module
    group.sealed_detail = ctx.key.seal(GROUP_DETAIL, (lst.id, group_id), plain)
    group.detail_digest = disclosure.digest(slot_user(group_id), group_id)
    group.closed_by, group.closed_at, group.close_reason = actor.name, now, reason
    session.add(group)
    audit.append(session, actor=actor.name, role=actor.role, action="group.closed",
                 entity_type="group", entity_id=group_id, reason=reason,
                 correlation_id=correlation_id,
                 after={"group": group_id, "list_id": lst.id, "members": len(members),
                        "module": module, "detail_digest": group.detail_digest})
    rows = [_allocate_member(session, ctx, lst, m, module, disclosure, levels, actor, reason,
                             correlation_id) for m in members]
    log.info("group.closed", group=group_id, members=len(rows), module=module)
    return ClosedGroup(group, rows, disclosure)


def _allocate_member(session: Session, ctx: Context, lst: RandomizationList, member: GroupMember,
                     module: str, group: Disclosure, levels: dict[str, str], actor: Actor,
                     reason: str | None, correlation_id: str | None) -> AllocationRow:
    existing = repository.allocation(session, member.record)
    if existing is not None:  # allocated before it joined (altered data): never twice
        raise Conflict(f"record {member.record} of group {group.group} is allocated already",
                       field="group_id")
    req = AllocationRequest(record=member.record, cluster=None, site=levels.get("site"),
                            pilot=False, source="group", actor=actor,
                            correlation_id=correlation_id, reason=reason, levels=levels)
    # Each member's detail has its own salt: equal digests would show who shares an arm.
    mine = Disclosure(None, group.arm, group.stratum, group.seq, group.batch,
                      secrets.token_hex(16), group=group.group)
    row = service._record_allocation(session, ctx, lst, req, module, mine)
    member.status = MemberStatus.ALLOCATED
    session.add(member)
    return row


def group_disclosure(ctx: Context, group: RandomizationGroup) -> Disclosure:
    if group.sealed_detail is None or group.list_id is None:
        raise Conflict(f"group {group.id} is not randomized yet", field="group_id")
    try:
        plain = ctx.key.open(GROUP_DETAIL, (group.list_id, group.id), group.sealed_detail)
    except SealedDataError:
        raise Conflict(f"the sealed detail of group {group.id} does not open: another key, or "
                       "the row was altered", field="group_id") from None
    return Disclosure(**json.loads(plain))


# ── a late joiner: the study manager decides ─────────────────────────────────────────


def admit(session: Session, ctx: Context, *, group_id: str, record: str, actor: Actor,
          reason: str, correlation_id: str | None) -> AllocationRow:
    """Admit a member held for review to their closed group: they inherit its arm (no new
    draw). Reason required; audited."""
    if not reason.strip():
        raise InvalidInput("a reason is required to admit a late member", field="reason")
    lst = repository.active_list(session, share_lock=True)  # lock order as closing's
    group = _lock_group(session, group_id)
    if group is None:
        raise NotFound(f"no group {group_id}", field="group_id")
    member = session.get(GroupMember, record)
    if member is None or member.group_id != group_id:
        raise NotFound(f"record {record} is not a member of group {group_id}", field="record")
    if member.status != MemberStatus.REVIEW:
        raise Conflict(f"record {record} is not held for review (status {member.status})",
                       field="record")
    if group.status != GroupStatus.CLOSED:
        raise Conflict(f"group {group_id} is open: it randomizes its members when it is "
                       "closed", field="group_id")
    if lst is None or lst.id != group.list_id:
        raise Conflict("the group's list no longer allocates", field="group_id")
    ctx.check_key(lst)
    d = group_disclosure(ctx, group)
    levels = _levels(ctx, group)
    member.status = MemberStatus.MEMBER
    row = _allocate_member(session, ctx, lst, member, group.module or "", d, levels, actor,
                           reason, correlation_id)
    audit.append(session, actor=actor.name, role=actor.role, action="group.member_admitted",
                 entity_type="group", entity_id=group_id, record=record, reason=reason,
                 correlation_id=correlation_id,
                 after={"group": group_id, "allocation_number": row.allocation_number})
    return row


# ── reads ───────────────────────────────────────────────────────────────────────────


def all_groups(session: Session) -> list[tuple[RandomizationGroup, list[GroupMember]]]:
    groups = list(session.exec(select(RandomizationGroup)
                               .order_by(col(RandomizationGroup.opened_at),
                                         col(RandomizationGroup.id))))
    return [(g, members_of(session, g.id)) for g in groups]


def allocation_numbers(session: Session, records: list[str]) -> dict[str, str]:
    if not records:
        return {}
    rows = session.exec(select(AllocationRow.record, AllocationRow.allocation_number)
                        .where(col(AllocationRow.record).in_(records)))
    return {record: number for record, number in rows}


def group_of(session: Session, group_id: str) -> tuple[RandomizationGroup, list[GroupMember]]:
    group = session.get(RandomizationGroup, group_id)
    if group is None:
        raise NotFound(f"no group {group_id}", field="group_id")
    return group, members_of(session, group_id)


def unblinded_read(session: Session, ctx: Context, group: RandomizationGroup,
                   actor: Actor) -> Disclosure | None:
    """The group's arm and stratum for an unblinded caller; the read is audited."""
    if group.status != GroupStatus.CLOSED:
        return None
    d = group_disclosure(ctx, group)
    audit.append(session, actor=actor.name, role=actor.role, action="group.unblinded_read",
                 entity_type="group", entity_id=group.id)
    return d


# ── at unsealing: each closed group holds its own used slot, its members its arm ─────


def verify_groups(session: Session, ctx: Context, lst: RandomizationList,
                  slots: dict[tuple[str, int], tuple[str, str | None]]) -> list[str]:
    """Problems of the list's groups: `slots` maps (stratum, seq) to (arm, used_by tag)."""
    problems: list[str] = []
    allocations = {r.record: r for r in repository.allocations(session, list_ids=[lst.id])}
    closed = [g for g, _ in all_groups(session) if g.list_id == lst.id]
    for group in closed:
        d = group_disclosure(ctx, group)
        slot = slots.get((d.stratum, d.seq or 0))
        if slot is None or slot[1] != ctx.key.participant_tag(lst.id, slot_user(group.id)):
            problems.append(f"group {group.id} does not hold the slot it was allocated")
        elif slot[0] != d.arm:
            problems.append(f"group {group.id} has another arm than its slot")
        for m in members_of(session, group.id):
            row = allocations.get(m.record)
            mine = service.disclose(ctx, row) if row is not None else None
            if m.status == MemberStatus.ALLOCATED and (
                    mine is None or mine.arm != d.arm or mine.group != group.id):
                problems.append(f"record {m.record} does not hold the arm of group {group.id}")
    return problems
