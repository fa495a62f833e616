"""Use cases of the notifications service: schedules from allocations, progress and
withdrawal from REDCap saves, opt-outs, safety notices. Take a session; never commit.

The module in an allocation decides one thing only, whether diary prompts run; it is not
stored, audited or put into any message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from services.core import audit, outbox
from services.core.errors import InvalidInput, NotFound
from services.core.events import (
    Allocated,
    FormSaved,
    SafetyObligationEscalated,
    SafetyObligationOpened,
    TimepointCompleted,
)

from . import contacts, repository
from .diary import extend_diary, mark_answered
from .dispatch.metrics import count_outcome
from .domain import CancelReason, DeliveryState, local_day, plan_reminders, schedule_timepoints
from .models import FormStatus, Message, Participant, TimepointRow
from .planning import replan
from .runtime import Runtime

ACTOR, SYSTEM = "service:notifications", "system"
SERVICE = "notifications"


def record_change(session: Session, *, action: str, entity_type: str, entity_id: str,
                  record: str | None = None, before: Any = None, after: Any = None,
                  reason: str | None = None, actor: str = ACTOR, role: str = SYSTEM,
                  correlation_id: str | None = None) -> None:
    audit.append(session, actor=actor, role=role, action=action, entity_type=entity_type,
                 entity_id=entity_id, record=record, before=before, after=after,
                 reason=reason, correlation_id=correlation_id)


def wake_after_commit(session: Session, rt: Runtime) -> None:
    """New work for the dispatcher: look as soon as this transaction is committed."""
    event.listen(session, "after_commit", lambda _s: rt.wake(), once=True)


def new_message(*, now: datetime, **values: Any) -> Message:
    values.setdefault("not_before", values["due_at"])
    return Message(state=DeliveryState.SCHEDULED, tries=0, created_at=now, updated_at=now, **values)


# ── allocation → schedule ──────────────────────────────────────────────────────────
def schedule_participant(session: Session, rt: Runtime, *, allocated: Allocated,
                         correlation_id: str | None = None) -> bool:
    """Timepoints, planned reminders and the first diary prompts; False if already done."""
    record = allocated.record
    if repository.participant(session, record) is not None:
        return False
    now = rt.now()
    details = contacts.load(session, rt, record)
    zone = contacts.zone_of(rt, details)
    policy = rt.protocol.reminders
    diary = rt.protocol.diary is not None and allocated.module == rt.protocol.diary.module
    participant = Participant(
        record=record, allocation_number=allocated.allocation_number,
        allocated_at=allocated.allocated_at, diary=diary,
        diary_first_day=local_day(allocated.allocated_at, zone) + timedelta(days=1)
        if diary else None, created_at=now)
    session.add(participant)
    planned = []
    for sched in schedule_timepoints(rt.protocol.timepoints, allocated.allocated_at, zone):
        session.add(TimepointRow(
            record=record, timepoint=sched.timepoint, redcap_event=sched.redcap_event,
            due_on=sched.due_on, last_day=sched.last_day, opens_at=sched.opens_at,
            due_at=sched.due_at, closes_at=sched.closes_at))
        for r in plan_reminders(record, sched, policy, zone):
            planned.append(r)
            session.add(new_message(
                key=r.key, kind="reminder", record=record, timepoint=r.timepoint,
                attempt=r.attempt, channel=r.channel, due_at=r.send_at, now=now))
    session.flush()
    record_change(session, action="participant.scheduled", entity_type="participant",
                  entity_id=record, record=record, correlation_id=correlation_id, after={
                      "allocation_number": allocated.allocation_number,
                      "allocated_at": allocated.allocated_at,
                      "reminders": [{"key": r.key, "timepoint": r.timepoint,
                                     "attempt": r.attempt, "channel": r.channel,
                                     "send_at": r.send_at} for r in planned]})
    if diary:
        extend_diary(session, rt, participant, now)
    refresh_completion(session, rt, record, correlation_id=correlation_id)
    wake_after_commit(session, rt)
    return True


# ── REDCap saves: contacts, progress, withdrawal ─────────────────────────────────────
def record_form_saved(session: Session, rt: Runtime, *, saved: FormSaved,
                      correlation_id: str | None = None) -> None:
    redcap = rt.protocol.redcap
    if saved.project_id != redcap.project_id or saved.event is None:
        return
    event_name = redcap.event_key(saved.event)
    if event_name is None:
        return
    record = saved.record
    if event_name == redcap.baseline_event:
        update_contact(session, rt, record=record, fields=saved.fields,
                       correlation_id=correlation_id)
    if _store_form_statuses(session, rt, record, event_name, saved.fields, correlation_id):
        refresh_completion(session, rt, record, correlation_id=correlation_id)
    if _is_diary_answer(rt, saved, event_name):
        mark_answered(session, rt, record, instance=saved.repeat_instance,
                      correlation_id=correlation_id)
    if saved.fields.get(redcap.fields.withdrawn) == "1":
        withdraw(session, rt, record=record, correlation_id=correlation_id)


def _is_diary_answer(rt: Runtime, saved: FormSaved, event_name: str) -> bool:
    """A complete save of the diary's answer survey in its own event."""
    diary = rt.protocol.diary
    if diary is None or diary.answer_form is None or saved.instrument != diary.answer_form:
        return False
    return saved.complete_status == 2 and diary.answer_event in (None, event_name)


def _store_form_statuses(session: Session, rt: Runtime, record: str, event_name: str,
                         fields: dict[str, str], correlation_id: str | None) -> bool:
    now, changed = rt.now(), False
    forms = {f for tp in rt.protocol.timepoints if tp.redcap_event == event_name
             for f in tp.forms}
    for form in sorted(forms):
        raw = fields.get(f"{form}_complete")
        if raw is None:
            continue
        complete = int(raw) if raw.strip().isdigit() else 0
        row = repository.form_status(session, record, event_name, form)
        if row is not None and row.complete == complete:
            continue
        before = None if row is None else row.complete
        row = row or FormStatus(record=record, event=event_name, form=form, complete=0,
                                updated_at=now)
        row.complete, row.updated_at = complete, now
        session.add(row)
        changed = True
        record_change(session, action="form.status_changed", entity_type="form_status",
                      entity_id=f"{record}/{event_name}/{form}", record=record,
                      before={"complete": before}, after={"complete": complete},
                      correlation_id=correlation_id)
    session.flush()
    return changed


def update_contact(session: Session, rt: Runtime, *, record: str, fields: dict[str, str],
                   correlation_id: str | None = None) -> bool:
    previous = contacts.load(session, rt, record)
    details = contacts.from_fields(fields, rt.protocol, previous)
    if details is None or details == previous:
        return False
    contacts.store(session, rt, record, details, rt.now())
    changed = contacts.changed_fields(previous, details)
    refused = contacts.refused_fields(fields, rt.protocol, details)
    record_change(session, action="contact.updated", entity_type="contact", entity_id=record,
                  record=record, correlation_id=correlation_id,
                  after={"fields": changed, "key_id": rt.cipher.key_id,
                         **({"refused": refused} if refused else {})})
    if "timezone" in changed:
        replan(session, rt, record, correlation_id=correlation_id)
    newly_out = details.opt_outs() - (previous.opt_outs() if previous else frozenset())
    for channel in sorted(newly_out):
        cancel_queued(session, rt, repository.queued(session, record, channel=channel),
                      CancelReason.OPTED_OUT, correlation_id=correlation_id)
    return True


def refresh_completion(session: Session, rt: Runtime, record: str, *,
                       correlation_id: str | None = None) -> list[str]:
    """Mark timepoints whose forms are all complete; cancel their queued reminders."""
    done_by_event = repository.completed_forms(session, record)
    completed = []
    for row in repository.timepoints(session, record):
        tp = rt.protocol.timepoint_by_key.get(row.timepoint)
        if row.completed_at is not None or tp is None:
            continue
        if not set(tp.forms) <= done_by_event.get(row.redcap_event, frozenset()):
            continue
        row.completed_at = rt.now()
        session.add(row)
        sent = repository.reminders_left_us(session, record).get(row.timepoint, 0)
        record_change(session, action="timepoint.completed", entity_type="timepoint",
                      entity_id=f"{record}/{row.timepoint}", record=record,
                      after={"completed_at": row.completed_at, "reminders_sent": sent},
                      correlation_id=correlation_id)
        cancel_queued(session, rt, repository.queued(session, record, timepoint=row.timepoint,
                                                     kinds=("reminder",)),
                      CancelReason.TIMEPOINT_COMPLETE, correlation_id=correlation_id)
        outbox.enqueue(session, TimepointCompleted(
            record=record, timepoint=row.timepoint, completed_at=row.completed_at,
            reminders_sent=sent), producer=SERVICE, record=record,
            correlation_id=correlation_id)
        completed.append(row.timepoint)
    return completed


def withdraw(session: Session, rt: Runtime, *, record: str,
             correlation_id: str | None = None) -> bool:
    """Stop everything for the participant. A withdrawal before allocation is not kept:
    no schedule exists yet to stop."""
    participant = repository.participant(session, record)
    if participant is None or participant.withdrawn_at is not None:
        return False
    participant.withdrawn_at = rt.now()
    session.add(participant)
    record_change(session, action="participant.withdrawn", entity_type="participant",
                  entity_id=record, record=record, after={"withdrawn_at": participant.withdrawn_at},
                  correlation_id=correlation_id)
    cancel_queued(session, rt, repository.queued(session, record), CancelReason.WITHDRAWN,
                  correlation_id=correlation_id)
    return True


def opt_out(session: Session, rt: Runtime, *, record: str, channel: str, actor: str,
            role: str) -> int:
    """Staff record that a participant wants no more messages on `channel`."""
    if channel not in contacts.CHANNELS:
        raise InvalidInput(f"{channel!r} is not a channel ({', '.join(contacts.CHANNELS)})",
                           field="channel")
    if repository.participant(session, record) is None and repository.contact(
            session, record) is None:
        raise NotFound(f"no participant {record!r} is known to notifications", field="record")
    previous = contacts.load(session, rt, record) or contacts.ContactDetails()
    if channel not in previous.staff_opted_out:
        details = replace(previous, staff_opted_out=previous.staff_opted_out | {channel})
        contacts.store(session, rt, record, details, rt.now())
        record_change(session, action="contact.opted_out", entity_type="contact",
                      entity_id=record, record=record, actor=actor, role=role,
                      after={"channel": channel})
    return cancel_queued(session, rt, repository.queued(session, record, channel=channel),
                         CancelReason.OPTED_OUT, actor=actor, role=role)


def cancel_queued(session: Session, rt: Runtime, messages: Sequence[Message],
                  reason: CancelReason | str, *, actor: str = ACTOR, role: str = SYSTEM,
                  correlation_id: str | None = None) -> int:
    """Cancel messages not yet handed to a channel (and their open staff tasks)."""
    now, done = rt.now(), []
    for msg in messages:
        if repository.set_state_if(session, msg.key, msg.state, DeliveryState.CANCELLED,
                                   cancel_reason=str(reason), finished_at=now, updated_at=now):
            done.append(msg)
    for task in repository.open_tasks_for(session, [m.key for m in done]):
        task.state, task.finished_at = "cancelled", now
        session.add(task)
    if done:
        for msg in done:
            count_outcome(msg.channel, "cancelled")
        record = done[0].record
        record_change(session, action="message.cancelled", entity_type="message",
                      entity_id=record, record=record, actor=actor, role=role,
                      reason=str(reason), correlation_id=correlation_id,
                      after={"keys": [m.key for m in done]})
    session.expire_all()
    return len(done)


# ── safety obligations → notices to the protocol's contacts ──────────────────────────
def notify_safety(session: Session, rt: Runtime, *,
                  obligation: SafetyObligationOpened | SafetyObligationEscalated,
                  correlation_id: str | None = None) -> list[str]:
    stage = "escalated" if isinstance(obligation, SafetyObligationEscalated) else "opened"
    known = {c.role for c in rt.protocol.safety.contacts}
    unknown = [r for r in obligation.recipients if r not in known]
    if unknown:
        raise InvalidInput(f"recipients {unknown} are not in protocol safety.contacts",
                           field="recipients")
    now, keys = rt.now(), []
    for role in obligation.recipients:
        key = safety_key(obligation.obligation_id, stage, role)
        if repository.message(session, key) is not None:
            continue
        session.add(new_message(key=key, kind="safety_notice", record=obligation.record,
                                channel="email", recipient=role,
                                ref=f"{obligation.obligation_id}:{stage}", due_at=now, now=now,
                                facts=audit.canonical_json({
                                    "stage": stage, "rule": obligation.rule,
                                    "case_id": obligation.case_id,
                                    "deadline": obligation.deadline})))
        keys.append(key)
    if keys:
        session.flush()
        record_change(session, action="safety_notice.scheduled", entity_type="obligation",
                      entity_id=obligation.obligation_id, record=obligation.record,
                      correlation_id=correlation_id,
                      after={"stage": stage, "recipients": list(obligation.recipients),
                             "keys": keys})
        wake_after_commit(session, rt)
    return keys


def safety_key(obligation_id: str, stage: str, role: str) -> str:
    raw = "\x1f".join(("safety", obligation_id, stage, role))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]
