"""Use cases of adverse-event cases and their reporting obligations.

Each takes a session and keyword arguments and never commits: the edge (request or
consumer) owns the transaction, in which every change also appends its audit entry and
stages its events. The clock is passed in (`now`), so tests can freeze time.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from services.core import audit
from services.core.errors import Conflict, InvalidInput, NotFound
from services.core.events import SafetyObligationEscalated, SafetyObligationOpened
from services.core.outbox import enqueue
from services.core.protocol.safety import SafetyRules

from . import repository
from .domain import (
    AdverseEvent,
    Case,
    FieldProblem,
    InvalidAdverseEvent,
    Obligation,
    ObligationStatus,
    acknowledge,
    assess,
    audit_entry,
    due_for_escalation,
    earliest_open_deadline,
    follow_up,
    mark_escalated,
    mark_sent,
    open_case,
    parse_adverse_event,
    plan_obligations,
    status,
)
from .models import SafetyCase, SafetyCaseVersion, SafetyObligation

PRODUCER = "safety"


@dataclass(frozen=True)
class Actor:
    """Who made a change: a person through the gateway, or REDCap through the bus."""

    subject: str
    role: str
    correlation_id: str | None = None


def digest(value: Any) -> str:
    return hashlib.sha256(audit.canonical_json(value).encode()).hexdigest()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# --- cases ------------------------------------------------------------------------------


def report_adverse_event(session: Session, *, data: Mapping[str, Any], actor: Actor,
                         rules: SafetyRules, now: datetime) -> Case:
    """A new case from an API body. Raises `InvalidAdverseEvent` naming every bad field."""
    event = parse_adverse_event(data, now=now)
    case = open_case(new_id("ae"), event, recorded_by=actor.subject)
    store_version(session, case, actor=actor, source="api", rules=rules, now=now)
    return case


def merge_changes(latest: AdverseEvent, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The latest version's fields with `changes` applied (nested objects merged key by key)."""
    merged = latest.model_dump(mode="json")
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def follow_up_case(session: Session, *, case_id: str, changes: Mapping[str, Any], reason: str,
                   received_at: datetime | None, actor: Actor, rules: SafetyRules,
                   now: datetime) -> Case:
    """A new version of an existing case. Raises `InvalidAdverseEvent` (fields named as
    `changes.<field>`) or `InvalidFollowUp`."""
    case = require_case(session, case_id)
    received = received_at or now
    if received > now:
        raise InvalidInput(f"received_at {received.isoformat()} is in the future",
                           field="received_at")
    try:
        event = parse_adverse_event(merge_changes(case.latest.event, changes), now=now)
    except InvalidAdverseEvent as err:
        raise InvalidAdverseEvent([FieldProblem(f"changes.{p.field}", p.message)
                                   for p in err.problems]) from None
    updated = follow_up(case, event, reason=reason, received_at=received,
                        recorded_by=actor.subject)
    store_version(session, updated, actor=actor, source="api", rules=rules, now=now)
    return updated


def require_case(session: Session, case_id: str) -> Case:
    case = repository.load_case(session, case_id)
    if case is None:
        raise NotFound(f"no adverse-event case {case_id}", field="case_id")
    return case


def store_version(session: Session, case: Case, *, actor: Actor, source: str,
                  rules: SafetyRules, now: datetime) -> list[SafetyObligation]:
    """Write the case's latest version, audit it, and open the obligations it starts."""
    latest = case.latest
    event_json = latest.event.model_dump(mode="json")
    row = repository.case_row(session, case.case_id)
    if row is None:
        row = SafetyCase(case_id=case.case_id, record=case.participant, source=source,
                         current_version=latest.number, created_by=actor.subject,
                         created_at=now, updated_at=now)
    else:
        row.current_version, row.updated_at = latest.number, now
    session.add(row)
    session.flush()  # the case row first: versions and obligations refer to it
    session.add(SafetyCaseVersion(
        case_id=case.case_id, number=latest.number, event=json.dumps(event_json),
        event_sha256=digest(event_json), reason=latest.reason, received_at=latest.received_at,
        recorded_by=latest.recorded_by, recorded_role=actor.role, recorded_at=now))
    session.flush()  # a concurrent writer of the same version fails here, on the primary key
    entry = {**audit_entry(case, latest.number, rules), "event_sha256": digest(event_json)}
    if latest.number == 1:
        entry["event"] = event_json
    audit.append(session, actor=actor.subject, role=actor.role,
                 action="case.created" if latest.number == 1 else "case.versioned",
                 entity_type="adverse_event_case", entity_id=case.case_id,
                 record=case.participant, after=entry, reason=latest.reason,
                 correlation_id=actor.correlation_id)
    return open_obligations(session, case, actor=actor, rules=rules, now=now)


def open_obligations(session: Session, case: Case, *, actor: Actor, rules: SafetyRules,
                     now: datetime) -> list[SafetyObligation]:
    existing = [repository.to_obligation(r)
                for r in repository.obligation_rows(session, case_id=case.case_id)]
    opened = []
    for o in plan_obligations(case, rules, existing):
        row = SafetyObligation(
            id=new_id("ob"), key=o.key, case_id=o.case_id, record=o.participant,
            rule_key=o.rule_key, recipients=json.dumps(list(o.recipients)), version=o.version,
            follow_up=o.follow_up, status=status(o, now).value, started_at=o.started_at,
            deadline_at=o.deadline_at, escalate_at=o.escalate_at, created_at=now)
        session.add(row)
        session.flush()
        audit.append(session, actor=actor.subject, role=actor.role, action="obligation.opened",
                     entity_type="obligation", entity_id=row.id, record=o.participant,
                     after=obligation_audit(o), correlation_id=actor.correlation_id)
        enqueue(session, SafetyObligationOpened(
            obligation_id=row.id, case_id=o.case_id, record=o.participant, rule=o.rule_key,
            recipients=list(o.recipients), deadline=o.deadline_at,
            awareness_time=case.latest.event.awareness_time),
            producer=PRODUCER, correlation_id=actor.correlation_id, record=o.participant,
            event_id=f"safety-obligation-opened-{row.id}")
        opened.append(row)
    return opened


def obligation_audit(o: Obligation) -> dict[str, Any]:
    return o.model_dump(mode="json", include={
        "key", "case_id", "rule_key", "recipients", "version", "follow_up", "started_at",
        "deadline_at", "escalate_at", "acknowledged_at", "acknowledged_by", "sent_at",
        "sent_by", "escalated_at"})


def case_assessment(case: Case, rules: SafetyRules) -> dict[str, bool]:
    a = assess(case.latest.event, rules)
    return {"serious": a.serious, "related": a.related, "unexpected": a.unexpected,
            "susar": a.susar}


# --- obligations ------------------------------------------------------------------------


def require_obligation(session: Session, obligation_id: str) -> SafetyObligation:
    row = repository.obligation_row(session, obligation_id)
    if row is None:
        raise NotFound(f"no obligation {obligation_id}", field="obligation_id")
    return row


def apply_change(session: Session, row: SafetyObligation, after: Obligation, *, action: str,
           actor: Actor, now: datetime, reason: str | None = None) -> SafetyObligation:
    before = repository.to_obligation(row)
    row.acknowledged_at, row.acknowledged_by = after.acknowledged_at, after.acknowledged_by
    row.sent_at, row.sent_by = after.sent_at, after.sent_by
    row.escalated_at = after.escalated_at
    row.status = status(after, now).value
    session.add(row)
    audit.append(session, actor=actor.subject, role=actor.role, action=action,
                 entity_type="obligation", entity_id=row.id, record=row.record,
                 before=obligation_audit(before), after=obligation_audit(after), reason=reason,
                 correlation_id=actor.correlation_id)
    return row


def acknowledge_obligation(session: Session, *, obligation_id: str, actor: Actor, now: datetime,
                           note: str | None = None) -> SafetyObligation:
    """A safety officer takes charge: stops escalation, not the clock (409 if already done)."""
    row = require_obligation(session, obligation_id)
    current = repository.to_obligation(row)
    if current.sent_at is not None or current.acknowledged_at is not None:
        who = current.sent_by or current.acknowledged_by
        raise Conflict(f"obligation {obligation_id} was already "
                       f"{'sent' if current.sent_at else 'acknowledged'} by {who}",
                       field="obligation_id")
    after = acknowledge(current, by=actor.subject, at=now)
    return apply_change(session, row, after, action="obligation.acknowledged", actor=actor, now=now,
                  reason=note)


def mark_obligation_sent(session: Session, *, obligation_id: str, actor: Actor, now: datetime,
                         sent_at: datetime | None = None, note: str | None = None
                         ) -> SafetyObligation:
    """The report reached its recipients (at `sent_at`, default now): the obligation is met."""
    row = require_obligation(session, obligation_id)
    current = repository.to_obligation(row)
    at = sent_at or now
    if at > now:
        raise InvalidInput(f"sent_at {at.isoformat()} is in the future", field="sent_at")
    if at < current.started_at:
        raise InvalidInput(f"sent_at {at.isoformat()} is before the clock started "
                           f"({current.started_at.isoformat()})", field="sent_at")
    if current.sent_at is not None:
        raise Conflict(f"obligation {obligation_id} was already sent by {current.sent_by}",
                       field="obligation_id")
    after = mark_sent(current, by=actor.subject, at=at)
    return apply_change(session, row, after, action="obligation.sent", actor=actor, now=now,
                  reason=note)


def obligation_status(row: SafetyObligation, now: datetime) -> ObligationStatus:
    return status(repository.to_obligation(row), now)


SYSTEM = Actor("service:safety", "system")


@dataclass
class Sweep:
    """What one pass of the obligation watch did and saw."""

    escalated: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    oldest_deadline: datetime | None = None


def sweep_obligations(session: Session, *, now: datetime) -> Sweep:
    """Escalate unacknowledged obligations at their escalation point (once each), mark the
    overdue ones, and count obligations by status for the metrics."""
    sweep = Sweep()
    current: dict[str, Obligation] = {}
    rows = repository.obligation_rows(session)
    due = {o.key for o in due_for_escalation([repository.to_obligation(r) for r in rows], now)}
    for row in rows:
        o = repository.to_obligation(row)
        if o.key in due:
            escalated = mark_escalated(o, at=now)
            enqueue(session, SafetyObligationEscalated(
                obligation_id=row.id, case_id=o.case_id, record=o.participant, rule=o.rule_key,
                recipients=list(o.recipients), deadline=o.deadline_at),
                producer=PRODUCER, record=o.participant,
                event_id=f"safety-obligation-escalated-{row.id}")
            apply_change(session, row, escalated, action="obligation.escalated", actor=SYSTEM,
                         now=now)
            sweep.escalated.append(row.id)
            o = escalated
        now_status = status(o, now)
        if now_status is ObligationStatus.OVERDUE and row.overdue_at is None:
            row.overdue_at, row.status = now, now_status.value
            session.add(row)
            audit.append(session, actor=SYSTEM.subject, role=SYSTEM.role,
                         action="obligation.overdue", entity_type="obligation", entity_id=row.id,
                         record=row.record, after={**obligation_audit(o), "overdue_at": now})
            sweep.overdue.append(row.id)
        elif row.status != now_status.value:
            row.status = now_status.value  # keeps the column in step with the clock
            session.add(row)
        current[row.id] = o
    tally = Counter(status(o, now).value for o in current.values())
    sweep.by_status = {s.value: tally.get(s.value, 0) for s in ObligationStatus}
    sweep.oldest_deadline = earliest_open_deadline(list(current.values()))
    return sweep
