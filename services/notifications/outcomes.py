"""What happened to a message after it left the dispatcher: SMS delivery callbacks and
the staff tasks phone and letter reminders became. Take a session; never commit."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session

from services.core import inbox
from services.core.auth import Unauthenticated
from services.core.errors import Conflict, InvalidInput, NotFound

from . import contacts, repository
from .diary_tally import count_change
from .dispatch.compose import render_task
from .dispatch.metrics import DISPATCH_LAG, count_outcome
from .domain import (
    DeliveryState,
    InvalidSignature,
    NotificationError,
    RenderedMessage,
    TaskOutcome,
    can_transition,
    local_day,
    provider_state,
    task_path,
    verify_callback,
)
from .models import StaffTask
from .runtime import Runtime
from .service import record_change

CALLBACKS = "sms-callbacks"  # inbox consumer name: one effect per provider callback id
STAFF = "staff"
OUTCOMES = {"phone": {TaskOutcome.REACHED, TaskOutcome.VOICEMAIL, TaskOutcome.WRONG_NUMBER},
            "letter": {TaskOutcome.SENT}}


# ── SMS delivery callbacks ─────────────────────────────────────────────────────────
def apply_sms_callback(session: Session, rt: Runtime, *, body: bytes, timestamp: str | None,
                       signature: str | None, received_at: datetime) -> tuple[str, str | None]:
    """Verify and apply one provider callback; ("applied"|"duplicate"|"ignored", state)."""
    secret = rt.sms_secret()
    if secret is None:
        raise Unauthenticated("no SMS callback secret is configured", field="X-Signature")
    try:  # freshness is judged on the real clock: it is about transport, not the trial
        verify_callback(secret, timestamp, body, signature, received_at)
    except InvalidSignature as exc:
        raise Unauthenticated(str(exc), field=exc.field) from None
    try:
        payload = json.loads(body)
        callback_id, status = str(payload["callback_id"]), str(payload["status"])
    except (ValueError, KeyError, TypeError):
        raise InvalidInput("callback body needs callback_id and status", field="body") from None
    try:
        target = provider_state(status)
    except NotificationError as exc:
        raise InvalidInput(str(exc), field="status") from None
    if not inbox.claim(session, CALLBACKS, callback_id):
        return "duplicate", None
    msg = repository.message(session, str(payload.get("reference") or ""))
    msg = msg or repository.message_by_provider_ref(session, str(payload.get("id") or ""))
    if msg is None:
        raise NotFound("no message has this reference", field="reference")
    now = rt.now()
    if msg.state in repository.QUEUED:  # the provider took it before we recorded it
        repository.set_state_if(session, msg.key, msg.state, DeliveryState.SENT, sent_at=now,
                                lease_until=None, provider_ref=payload.get("id"), updated_at=now)
        record_change(session, action="message.sent", entity_type="message", entity_id=msg.key,
                      record=msg.record, reason="confirmed by the provider's callback",
                      after={"state": "sent", "provider_ref": payload.get("id")})
        count_change(session, msg, sent=1)
        session.refresh(msg)
    if not can_transition(DeliveryState(msg.state), target):
        return "ignored", msg.state
    stamp: dict[str, Any] = (
        {"delivered_at": now} if target is DeliveryState.DELIVERED else {"finished_at": now})
    repository.set_state_if(session, msg.key, msg.state, target, updated_at=now,
                            error=payload.get("error_code") and f"provider {payload['error_code']}",
                            **stamp)
    record_change(session, action=f"message.{target.value}", entity_type="message",
                  entity_id=msg.key, record=msg.record,
                  before={"state": msg.state}, after={"state": target.value})
    count_outcome(msg.channel, target.value)
    return "applied", target.value


# ── staff tasks ──────────────────────────────────────────────────────────────────
def _task(session: Session, task_id: int) -> StaffTask:
    task = repository.task(session, task_id)
    if task is None:
        raise NotFound(f"no task {task_id}", field="task_id")
    return task


def list_tasks(session: Session, rt: Runtime, *, state: str | None,
               include_future: bool) -> list[StaffTask]:
    states = [state] if state else ["open", "claimed"]
    return repository.tasks(session, states=states, due_by=None if include_future else rt.now())


def claim_task(session: Session, rt: Runtime, *, task_id: int, actor: str, role: str) -> StaffTask:
    task = _task(session, task_id)
    if task.state == "claimed" and task.claimed_by == actor:
        return task  # claiming twice is harmless
    if task.state != "open":
        raise Conflict(f"task {task_id} is {task.state}"
                       + (f" by {task.claimed_by}" if task.claimed_by else ""), field="task_id")
    task.state, task.claimed_by, task.claimed_at = "claimed", actor, rt.now()
    session.add(task)
    record_change(session, action="task.claimed", entity_type="staff_task",
                  entity_id=str(task_id), record=task.record, actor=actor, role=role,
                  before={"state": "open"}, after={"state": "claimed"})
    return task


def record_outcome(session: Session, rt: Runtime, *, task_id: int, outcome: str,
                   note: str | None, actor: str, role: str) -> StaffTask:
    task = _task(session, task_id)
    if task.state != "claimed" or task.claimed_by != actor:
        raise Conflict(f"claim task {task_id} before recording its outcome "
                       f"(it is {task.state}{' by ' + task.claimed_by if task.claimed_by else ''})",
                       field="task_id")
    recorded = TaskOutcome(outcome)
    if recorded not in OUTCOMES[task.channel]:
        allowed = ", ".join(sorted(o.value for o in OUTCOMES[task.channel]))
        raise InvalidInput(f"a {task.channel} task ends {allowed}", field="outcome")
    now, path = rt.now(), task_path(recorded)
    final = path[-1]
    stamps: dict[str, Any] = {"finished_at": now}
    if DeliveryState.SENT in path:
        stamps["sent_at"] = now
    if DeliveryState.DELIVERED in path:
        stamps["delivered_at"] = now
    current = DeliveryState.CLAIMED
    for step in path:  # claimed → sent → delivered: each step through the state machine
        if not repository.set_state_if(session, task.message_key, current, step, worker=STAFF,
                                       lease_until=None, updated_at=now, **stamps):
            raise Conflict(f"the reminder of task {task_id} is no longer open", field="task_id")
        current = step
    task.state, task.outcome, task.note, task.finished_at = "done", recorded.value, note, now
    session.add(task)
    record_change(session, action="task.outcome_recorded", entity_type="staff_task",
                  entity_id=str(task_id), record=task.record, actor=actor, role=role,
                  before={"state": "claimed"},
                  after={"state": "done", "outcome": recorded.value, "message_state": final})
    count_outcome(task.channel, final.value)
    if "sent_at" in stamps:
        DISPATCH_LAG.labels(task.channel).observe(max(0.0, (now - task.due_at).total_seconds()))
    return task


def task_text(session: Session, rt: Runtime, task: StaffTask) -> RenderedMessage:
    """The call script or the letter, with the participant's details (decrypted here)."""
    msg = repository.message(session, task.message_key)
    assert msg is not None
    details = contacts.load(session, rt, task.record)
    today = local_day(rt.now(), contacts.zone_of(rt, details))
    try:
        return render_task(session, rt, msg, details, today)
    except NotificationError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None


def letter(session: Session, rt: Runtime, *, task_id: int) -> str:
    task = _task(session, task_id)
    if task.channel != "letter":
        raise NotFound(f"task {task_id} is a {task.channel} task, not a letter", field="task_id")
    return task_text(session, rt, task).body
