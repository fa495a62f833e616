"""Read models: a participant's schedule, their messages, the retention report.
Blinded throughout: the service holds no arm, cluster or module to leak."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from sqlmodel import Session

from services.core.errors import NotFound

from . import repository
from .dispatch.steps import schedule_of
from .domain import (
    DeliveryState,
    TimepointRecord,
    TimepointStatus,
    channel_report,
    timepoint_report,
    timepoint_status,
)
from .models import Message
from .runtime import Runtime
from .schemas import (
    ChannelRetention,
    MessageRead,
    ReminderRead,
    RetentionRead,
    ScheduleRead,
    TimepointRead,
    TimepointRetention,
)


def schedule(session: Session, rt: Runtime, record: str) -> ScheduleRead:
    participant = repository.participant(session, record)
    if participant is None:
        raise NotFound(f"no schedule for record {record!r}", field="record")
    now = rt.now()
    done = repository.completed_forms(session, record)
    reminders: dict[str, list[Message]] = defaultdict(list)
    for msg in repository.reminders_of(session, record):
        reminders[msg.timepoint or ""].append(msg)
    timepoints = []
    for row in repository.timepoints(session, record):
        tp = rt.protocol.timepoint_by_key.get(row.timepoint)
        if tp is None:
            continue
        progress = timepoint_status(schedule_of(rt, row), done.get(row.redcap_event, ()), now)
        timepoints.append(TimepointRead(
            timepoint=row.timepoint, label=tp.label, redcap_event=row.redcap_event,
            due_on=row.due_on, window_opens_at=row.opens_at, window_closes_at=row.closes_at,
            respond_by=row.last_day, status=progress.status.value,
            completed_forms=list(progress.completed), missing_forms=list(progress.missing),
            completed_at=row.completed_at,
            reminders=[ReminderRead.model_validate(m) for m in reminders[row.timepoint]]))
    return ScheduleRead(record=record, allocation_number=participant.allocation_number,
                        allocated_at=participant.allocated_at,
                        withdrawn_at=participant.withdrawn_at, timepoints=timepoints)


def messages(session: Session, record: str) -> list[MessageRead]:
    rows = repository.messages_of(session, record)
    if not rows and repository.participant(session, record) is None:
        raise NotFound(f"no messages for record {record!r}", field="record")
    return [MessageRead.model_validate(m) for m in rows]


def _reminders_before(sent: list[datetime], completed_at: datetime | None) -> int:
    return sum(1 for at in sent if completed_at is None or at <= completed_at)


def retention(session: Session, rt: Runtime) -> RetentionRead:
    now = rt.now()
    done = repository.all_completed_forms(session)
    sent: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for msg in repository.reminders_sent_before(session):
        if msg.timepoint is not None:
            sent[(msg.record, msg.timepoint)].append(msg.sent_at or msg.updated_at)
    records: list[TimepointRecord] = []
    closed: Counter[str] = Counter()
    for row in repository.timepoints(session):
        if row.timepoint not in rt.protocol.timepoint_by_key:
            continue
        progress = timepoint_status(schedule_of(rt, row),
                                    done.get((row.record, row.redcap_event), ()), now)
        complete = progress.status is TimepointStatus.COMPLETE
        window_closed = now >= row.closes_at
        closed[row.timepoint] += window_closed
        records.append(TimepointRecord(
            row.timepoint, progress.status, window_closed,
            _reminders_before(sent[(row.record, row.timepoint)], row.completed_at)
            if complete else None))
    order = [t.key for t in rt.protocol.timepoints if t.anchor != "consent"]
    labels = {t.key: t.label for t in rt.protocol.timepoints}
    timepoints = [TimepointRetention(
        timepoint=r.timepoint, label=labels[r.timepoint], scheduled=r.scheduled, due=r.due,
        complete=r.complete, in_progress=r.in_progress, overdue=r.overdue,
        window_closed=closed[r.timepoint], responded=r.response.successes,
        response_rate=r.response.rate, response_ci_low=r.response.low,
        response_ci_high=r.response.high, reminders_needed=r.reminders_needed,
        mean_reminders_needed=r.mean_reminders_needed)
        for r in timepoint_report(records, order)]
    return RetentionRead(at=now, timepoints=timepoints, channels=_channels(session))


def _channels(session: Session) -> list[ChannelRetention]:
    states = repository.channel_states(session)
    unknown = Counter(c for c, s in states if s == "unknown")
    known = [(c, DeliveryState(s)) for c, s in states if s != "unknown"]
    rows = {r.channel: r for r in channel_report(known)}
    out = []
    for channel in sorted(set(rows) | set(unknown)):
        r = rows.get(channel)
        out.append(ChannelRetention(
            channel=channel, scheduled=(r.scheduled if r else 0) + unknown[channel],
            sent=r.sent if r else 0, delivered=r.delivered if r else 0,
            failed=r.failed if r else 0, cancelled=r.cancelled if r else 0,
            unknown=unknown[channel]))
    return out
