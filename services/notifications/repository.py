"""Every query of the notifications database."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from .domain.delivery import DeliveryState, transition
from .models import ContactRow, FormStatus, Message, Participant, StaffTask, TimepointRow

# Delivery states in which a reminder has (or may have) reached the participant.
LEFT_US = (DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.UNDELIVERED,
           DeliveryState.UNKNOWN)
QUEUED = (DeliveryState.SCHEDULED, DeliveryState.CLAIMED)
OPEN_TASK = ("open", "claimed")


# ── participants, contacts, forms, timepoints ─────────────────────────────────────
def participant(session: Session, record: str) -> Participant | None:
    return session.get(Participant, record)


def diary_participants(session: Session, days: int) -> list[Participant]:
    return list(session.exec(select(Participant).where(
        col(Participant.diary).is_(True), col(Participant.withdrawn_at).is_(None),
        col(Participant.diary_horizon) < days)))


def contact(session: Session, record: str) -> ContactRow | None:
    return session.get(ContactRow, record)


def form_statuses(session: Session, record: str) -> list[FormStatus]:
    return list(session.exec(select(FormStatus).where(FormStatus.record == record)))


def form_status(session: Session, record: str, event: str, form: str) -> FormStatus | None:
    return session.get(FormStatus, (record, event, form))


def completed_forms(session: Session, record: str) -> dict[str, frozenset[str]]:
    """Forms saved as complete (2), by protocol event name."""
    done: dict[str, set[str]] = {}
    for row in form_statuses(session, record):
        if row.complete == 2:
            done.setdefault(row.event, set()).add(row.form)
    return {event: frozenset(forms) for event, forms in done.items()}


def timepoints(session: Session, record: str | None = None) -> list[TimepointRow]:
    query = select(TimepointRow).order_by(col(TimepointRow.record), col(TimepointRow.due_on))
    if record is not None:
        query = query.where(TimepointRow.record == record)
    return list(session.exec(query))


def timepoint(session: Session, record: str, key: str) -> TimepointRow | None:
    return session.exec(select(TimepointRow).where(
        TimepointRow.record == record, TimepointRow.timepoint == key)).first()


def all_completed_forms(session: Session) -> dict[tuple[str, str], frozenset[str]]:
    """(record, event) → forms complete, for reports."""
    done: dict[tuple[str, str], set[str]] = {}
    for row in session.exec(select(FormStatus).where(FormStatus.complete == 2)):
        done.setdefault((row.record, row.event), set()).add(row.form)
    return {k: frozenset(v) for k, v in done.items()}


# ── messages ──────────────────────────────────────────────────────────────────────
def message(session: Session, key: str) -> Message | None:
    return session.get(Message, key)


def message_by_provider_ref(session: Session, ref: str) -> Message | None:
    return session.exec(select(Message).where(Message.provider_ref == ref)).first()


def messages_of(session: Session, record: str) -> list[Message]:
    return list(session.exec(select(Message).where(Message.record == record)
                             .order_by(col(Message.due_at), col(Message.key))))


def reminders_of(session: Session, record: str, timepoint: str | None = None) -> list[Message]:
    query = select(Message).where(Message.record == record, Message.kind == "reminder")
    if timepoint is not None:
        query = query.where(Message.timepoint == timepoint)
    return list(session.exec(query.order_by(col(Message.attempt))))


def reminders_left_us(session: Session, record: str) -> dict[str, int]:
    """Reminders per timepoint that were sent (or may have been), including finished tasks."""
    rows = session.exec(
        select(Message.timepoint, func.count()).where(
            Message.record == record, Message.kind == "reminder",
            col(Message.state).in_(LEFT_US))
        .group_by(col(Message.timepoint)))
    return {tp: n for tp, n in rows if tp is not None}


def queued(session: Session, record: str, *, timepoint: str | None = None,
           channel: str | None = None, kinds: Collection[str] = ("reminder", "diary_prompt"),
           ) -> list[Message]:
    """Messages not yet handed to a channel, plus reminders held by an open staff task."""
    query = select(Message).where(Message.record == record, col(Message.kind).in_(kinds),
                                  col(Message.state).in_(QUEUED))
    if timepoint is not None:
        query = query.where(Message.timepoint == timepoint)
    if channel is not None:
        query = query.where(Message.channel == channel)
    rows = list(session.exec(query))
    # A claimed row with a lease is in flight on a dispatcher: it cannot be recalled.
    return [m for m in rows if m.state == DeliveryState.SCHEDULED or m.lease_until is None]


def due_keys(session: Session, now: datetime, limit: int, skip: Collection[str]
             ) -> list[tuple[str, str]]:
    """(key, channel) of messages due now, oldest first."""
    query = (select(Message.key, Message.channel)
             .where(Message.state == DeliveryState.SCHEDULED, Message.not_before <= now)
             .order_by(col(Message.not_before)).limit(limit + len(skip)))
    return [(k, c) for k, c in session.exec(query) if k not in skip][:limit]


def expired_leases(session: Session, now: datetime, skip: Collection[str]) -> list[Message]:
    rows = session.exec(select(Message).where(
        Message.state == DeliveryState.CLAIMED, col(Message.lease_until).is_not(None),
        col(Message.lease_until) < now))
    return [m for m in rows if m.key not in skip]


def backlog(session: Session, now: datetime) -> int:
    return session.exec(select(func.count()).select_from(Message).where(
        col(Message.state).in_(QUEUED), Message.due_at <= now,
        col(Message.lease_until).is_not(None) | (Message.state == DeliveryState.SCHEDULED))).one()


def set_state_if(session: Session, key: str, expected: DeliveryState | str,
                 target: DeliveryState, *, worker: str | None = None, **values: Any) -> bool:
    """Compare-and-set of a message's state, through the state machine: True if this caller
    made the change. An illegal move raises `IllegalTransition` (a bug, never data)."""
    transition(expected, target)
    stmt = update(Message).where(col(Message.key) == key,
                                 col(Message.state) == DeliveryState(expected))
    if worker is not None:
        stmt = stmt.where(col(Message.claimed_by) == worker)
    result = session.execute(stmt.values(state=target.value, **values)
                             .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def channel_states(session: Session) -> list[tuple[str, str]]:
    return [(c, s) for c, s in session.exec(
        select(Message.channel, Message.state).where(
            col(Message.kind).in_(("reminder", "diary_prompt"))))]


def reminders_sent_before(session: Session) -> Iterable[Message]:
    return session.exec(select(Message).where(
        Message.kind == "reminder", col(Message.state).in_(LEFT_US)))


def recent_prompts(session: Session, since: datetime, until: datetime) -> list[Message]:
    return list(session.exec(select(Message).where(
        Message.kind == "diary_prompt", Message.due_at >= since, Message.due_at < until)))


# ── staff tasks ───────────────────────────────────────────────────────────────────
def task(session: Session, task_id: int) -> StaffTask | None:
    return session.get(StaffTask, task_id)


def tasks(session: Session, *, states: Collection[str], due_by: datetime | None,
          channel: str | None = None) -> list[StaffTask]:
    query = select(StaffTask).where(col(StaffTask.state).in_(states))
    if due_by is not None:
        query = query.where(StaffTask.due_at <= due_by)
    if channel is not None:
        query = query.where(StaffTask.channel == channel)
    return list(session.exec(query.order_by(col(StaffTask.due_at), col(StaffTask.id))))


def open_tasks_for(session: Session, keys: Collection[str]) -> list[StaffTask]:
    if not keys:
        return []
    return list(session.exec(select(StaffTask).where(
        col(StaffTask.message_key).in_(list(keys)), col(StaffTask.state).in_(OPEN_TASK))))


def answerable_prompt(session: Session, record: str, now: datetime) -> Message | None:
    """The participant's latest prompt that went out and is still open."""
    return session.exec(select(Message).where(
        Message.record == record, Message.kind == "diary_prompt",
        col(Message.state).in_(LEFT_US), col(Message.answered_at).is_(None),
        Message.due_at <= now, col(Message.expires_at) > now)
        .order_by(col(Message.due_at).desc())).first()
