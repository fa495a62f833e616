"""The dispatcher's database steps, each one short transaction (run in a worker thread).

    claim:   scheduled → claimed (compare-and-set, with a lease and this worker's id),
             after re-checking at send time that the message is still due; phone and
             letter reminders become staff tasks in the same transaction (no side effect);
             a reminder whose survey link cannot be had now is claimed and put back for
             a retry like a failed send (it never goes out without its link)
    record:  claimed → sent, or → scheduled again later (transient), or → failed +
             dead letter (permanent, or retries used up)
    recover: claims whose lease ran out (the sender crashed mid-send):
             SMS → scheduled again: the provider sends a repeated Idempotency-Key once;
             e-mail → `unknown`, never resent automatically: SMTP has no idempotency, and
             a reminder counted twice would break the protocol's cap. It stays counted
             as (possibly) sent, is dead-lettered with its reason, and becomes a
             follow-up (a staff task: resend, or record sent / not sent); the
             participant's next planned reminder still goes out.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core import outbox
from services.core.db import unit_of_work
from services.core.events import DispatchFailed

from .. import contacts, follow_ups, repository
from ..crypto import ContactDetails
from ..diary_tally import count_change
from ..domain import (
    CancelReason,
    DeliveryState,
    FailureKind,
    NotificationError,
    PlannedReminder,
    TimepointSchedule,
    classify_exception,
    is_still_due,
    next_allowed,
    retry_delay,
    should_retry,
)
from ..models import Message, StaffTask, TimepointRow
from ..runtime import Runtime
from ..service import SERVICE, cancel_queued, record_change
from ..survey_links import SurveyLinkUnavailable
from .channels import TRANSIENT_ERRORS, Outgoing, Receipt, error_summary
from .compose import compose
from .metrics import DISPATCH_LAG, count_dead_letter, count_outcome

log = structlog.get_logger(__name__)
STAFF = "staff"  # claimed_by of a reminder held by a staff task (no lease)
EXPIRED = "expired"


@dataclass(frozen=True)
class Claimed:
    outgoing: Outgoing
    kind: str
    due_at: datetime


def schedule_of(rt: Runtime, row: TimepointRow) -> TimepointSchedule:
    tp = rt.protocol.timepoint_by_key[row.timepoint]
    return TimepointSchedule(
        timepoint=row.timepoint, redcap_event=row.redcap_event, forms=tuple(tp.forms),
        interview="interview" in tp.mode, due_on=row.due_on, last_day=row.last_day,
        opens_at=row.opens_at, due_at=row.due_at, closes_at=row.closes_at)


def not_due_reason(session: Session, rt: Runtime, msg: Message,
                   details: ContactDetails | None, now: datetime) -> str | None:
    """Why `msg` must not go out now (None: send it)."""
    if msg.kind in ("safety_notice", "staff_alert"):  # to the trial team: always due
        return None
    if msg.kind == "diary_prompt":
        participant = repository.participant(session, msg.record)
        if participant is not None and participant.withdrawn_at is not None:
            return CancelReason.WITHDRAWN
        if msg.expires_at is not None and now >= msg.expires_at:
            return EXPIRED  # a prompt that expired unanswered is never sent late
        if details is None or msg.channel not in details.reachable():
            return CancelReason.NO_CONTACT
        return CancelReason.OPTED_OUT if msg.channel in details.opt_outs() else None
    assert msg.timepoint is not None and msg.attempt is not None
    row = repository.timepoint(session, msg.record, msg.timepoint)
    if row is None:
        return CancelReason.WINDOW_CLOSED
    planned = PlannedReminder(msg.record, msg.timepoint, msg.attempt, msg.channel,  # type: ignore[arg-type]
                              msg.due_at, msg.due_at, msg.key)
    snapshot = contacts.snapshot(session, rt, msg.record, details, exclude=msg)
    check = is_still_due(planned, schedule_of(rt, row), snapshot, rt.protocol.reminders, now)
    return check.reason


def claim(engine: Engine, rt: Runtime, key: str) -> Claimed | None:
    """Claim `key` for this worker, or settle it without a send (cancel, task, failure)."""
    now = rt.now()
    dead_lettered = False
    with unit_of_work(engine) as session:
        msg = repository.message(session, key)
        if msg is None or msg.state != DeliveryState.SCHEDULED or msg.not_before > now:
            return None
        details = (None if msg.kind in ("safety_notice", "staff_alert")
                   else contacts.load(session, rt, msg.record))
        reason = not_due_reason(session, rt, msg, details, now)
        if reason is not None:
            cancel_queued(session, rt, [msg], reason)
            return None
        if msg.channel in ("phone", "letter"):
            open_task(session, rt, msg, now)
            return None
        try:
            outgoing = compose(session, rt, msg, details)
        except SurveyLinkUnavailable as exc:
            dead_lettered = link_unavailable(session, rt, msg, exc, now)
        except NotificationError as exc:
            if repository.set_state_if(session, key, DeliveryState.SCHEDULED,
                                       DeliveryState.CLAIMED, claimed_by=rt.worker,
                                       tries=msg.tries, updated_at=now):
                fail(session, rt, msg, f"{type(exc).__name__}: {exc.field}", "permanent")
            return None
        else:
            if not repository.set_state_if(
                    session, key, DeliveryState.SCHEDULED, DeliveryState.CLAIMED,
                    claimed_by=rt.worker,
                    lease_until=now + timedelta(seconds=rt.settings.lease_seconds),
                    tries=msg.tries + 1, updated_at=now):
                return None  # another replica was first
            record_change(session, action="message.claimed", entity_type="message",
                          entity_id=key, record=msg.record, before={"state": "scheduled"},
                          after={"state": "claimed", "worker": rt.worker, "try": msg.tries + 1})
            return Claimed(outgoing, msg.kind, msg.due_at)
    if dead_lettered:
        rt.kernel.relay.wake()
    return None


def link_unavailable(session: Session, rt: Runtime, msg: Message, exc: SurveyLinkUnavailable,
                     now: datetime) -> bool:
    """The survey link cannot be had now: count the try and put the reminder back like a
    failed send (same backoff and retry limit). True if that gave it up (dead letter)."""
    log.warning("dispatch.survey_link_unavailable", key=msg.key, reason=exc.field)
    if not repository.set_state_if(session, msg.key, DeliveryState.SCHEDULED,
                                   DeliveryState.CLAIMED, claimed_by=rt.worker,
                                   tries=msg.tries + 1, updated_at=now):
        return False  # another replica was first
    session.refresh(msg)
    return settle_failure(session, rt, msg, FailureKind.TRANSIENT,
                          f"SurveyLinkUnavailable: {exc.field}")


def open_task(session: Session, rt: Runtime, msg: Message, now: datetime) -> None:
    if not repository.set_state_if(session, msg.key, DeliveryState.SCHEDULED,
                                   DeliveryState.CLAIMED, claimed_by=STAFF, tries=msg.tries + 1,
                                   updated_at=now):
        return
    assert msg.timepoint is not None
    task = StaffTask(message_key=msg.key, record=msg.record, timepoint=msg.timepoint,
                     channel=msg.channel, due_at=msg.due_at, state="open", created_at=now)
    session.add(task)
    session.flush()
    record_change(session, action="task.created", entity_type="staff_task",
                  entity_id=str(task.id), record=msg.record,
                  after={"message": msg.key, "channel": msg.channel, "timepoint": msg.timepoint,
                         "attempt": msg.attempt})
    count_outcome(msg.channel, "task")


def record_sent(engine: Engine, rt: Runtime, key: str, claimed: Claimed, receipt: Receipt) -> None:
    now, channel = rt.now(), claimed.outgoing.channel
    with unit_of_work(engine) as session:
        done = repository.set_state_if(
            session, key, DeliveryState.CLAIMED, DeliveryState.SENT, worker=rt.worker, sent_at=now,
            lease_until=None, provider_ref=receipt.provider_ref, updated_at=now)
        went_out = done  # from UNKNOWN (below) it was counted as sent already
        if not done:  # the lease was judged expired (state unknown): it did go out
            done = repository.set_state_if(session, key, DeliveryState.UNKNOWN, DeliveryState.SENT,
                                           sent_at=now, finished_at=None, error=None,
                                           updated_at=now)
            if done:
                follow_ups.close_for_message(session, rt, key, "sent", "the receipt arrived late")
        msg = repository.message(session, key)
        counted = went_out and count_change(session, msg, sent=1)
        if done and msg is not None:
            record_change(session, action="message.sent", entity_type="message", entity_id=key,
                          record=msg.record, after={"state": "sent", "channel": channel,
                                                    "provider_ref": receipt.provider_ref})
        elif msg is not None and msg.state not in repository.LEFT_US:
            log.warning("dispatch.sent_but_not_claimed", key=key, state=msg.state)
    if counted:  # committed: the relay may publish the diary count now
        rt.kernel.relay.wake()
    count_outcome(channel, "sent")
    DISPATCH_LAG.labels(channel).observe(max(0.0, (now - claimed.due_at).total_seconds()))


def record_failure(engine: Engine, rt: Runtime, key: str, claimed: Claimed,
                   exc: BaseException) -> None:
    kind = classify_exception(exc, TRANSIENT_ERRORS)
    failed = False
    with unit_of_work(engine) as session:
        msg = repository.message(session, key)
        if msg is None or msg.state != DeliveryState.CLAIMED or msg.claimed_by != rt.worker:
            return
        failed = settle_failure(session, rt, msg, kind, error_summary(exc))
    if failed:
        rt.kernel.relay.wake()


def settle_failure(session: Session, rt: Runtime, msg: Message, kind: FailureKind,
                   error: str) -> bool:
    """A claimed message that did not go out: scheduled again after `retry_delay`, or
    (permanent, or retries used up) failed and dead-lettered; True for the latter."""
    now, s = rt.now(), rt.settings
    if should_retry(kind, msg.tries - 1, s.max_retries):
        delay = retry_delay(msg.tries, random.random,
                            base=timedelta(seconds=s.retry_base_seconds),
                            cap=timedelta(seconds=s.retry_cap_seconds))
        not_before = _allowed(session, rt, msg, now + delay)
        repository.set_state_if(session, msg.key, DeliveryState.CLAIMED, DeliveryState.SCHEDULED,
                                worker=rt.worker, claimed_by=None, lease_until=None,
                                not_before=not_before, error=error, updated_at=now)
        record_change(session, action="message.retry_scheduled", entity_type="message",
                      entity_id=msg.key, record=msg.record, reason=error,
                      after={"state": "scheduled", "try": msg.tries, "not_before": not_before})
        count_outcome(msg.channel, "retried")
        return False
    reason = "permanent" if kind is FailureKind.PERMANENT else "retries_exhausted"
    return fail(session, rt, msg, error, reason)


def _allowed(session: Session, rt: Runtime, msg: Message, at: datetime) -> datetime:
    """Reminders retry outside quiet hours too."""
    if msg.kind != "reminder":
        return at
    zone = contacts.zone_of(rt, contacts.load(session, rt, msg.record))
    return next_allowed(at, zone, rt.protocol.reminders.quiet_hours)


def fail(session: Session, rt: Runtime, msg: Message, error: str, reason: str,
         state: DeliveryState = DeliveryState.FAILED) -> bool:
    """Give a claimed message up: record it, dead-letter it, count it."""
    now = rt.now()
    if not repository.set_state_if(session, msg.key, DeliveryState.CLAIMED, state,
                                   finished_at=now, lease_until=None, error=error,
                                   updated_at=now):
        return False
    outbox.enqueue(session, DispatchFailed(
        message_key=msg.key, kind=msg.kind, record=msg.record, timepoint=msg.timepoint,
        attempt=msg.attempt, channel=msg.channel, reason=reason, error=error,
        tries=msg.tries, failed_at=now), producer=SERVICE, record=msg.record,
        event_id=f"dlq-{msg.key}")
    if state is DeliveryState.UNKNOWN:  # it may have gone out: counted as sent
        count_change(session, msg, sent=1)
    record_change(session, action=f"message.{state}", entity_type="message", entity_id=msg.key,
                  record=msg.record, reason=reason,
                  after={"state": state, "error": error, "tries": msg.tries})
    count_outcome(msg.channel, state)
    count_dead_letter(reason)
    return True


def recover(engine: Engine, rt: Runtime, inflight: Collection[str]) -> int:
    """Settle claims whose sender vanished (see the module docstring)."""
    now, settled = rt.now(), 0
    with unit_of_work(engine) as session:
        for msg in repository.expired_leases(session, now, inflight):
            if msg.channel == "sms":
                if repository.set_state_if(session, msg.key, DeliveryState.CLAIMED,
                                           DeliveryState.SCHEDULED, claimed_by=None,
                                           lease_until=None, not_before=now, updated_at=now):
                    record_change(session, action="message.requeued", entity_type="message",
                                  entity_id=msg.key, record=msg.record,
                                  reason="lease expired; the provider deduplicates the key",
                                  after={"state": "scheduled", "previous_worker": msg.claimed_by})
                    count_outcome(msg.channel, "requeued")
                    settled += 1
            elif fail(session, rt, msg, "outcome unknown: the sender stopped mid-send",
                      "unknown_outcome", state=DeliveryState.UNKNOWN):
                follow_ups.open_for_unknown_email(session, rt, msg)
                settled += 1
    if settled:
        rt.kernel.relay.wake()
    return settled


def due(engine: Engine, rt: Runtime, limit: int, skip: Collection[str]) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return repository.due_keys(session, rt.now(), limit, skip)
