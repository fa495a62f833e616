"""Reminders to non-responders: the plan, its idempotency keys and the check at send time.

A reminder's `attempt` is its number within the timepoint (1 … max_per_timepoint, across
all channels); transport retries of one reminder reuse its key. The database should
enforce the cap as well: unique (participant, timepoint, attempt) and attempt ≤ the cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.core.protocol.notifications import Channel, ReminderPolicy

from .clock import local_to_utc, next_allowed, require_utc
from .schedule import TimepointSchedule, find_schedule


@dataclass(frozen=True)
class PlannedReminder:
    participant: str
    timepoint: str
    attempt: int          # 1-based reminder number within the timepoint
    channel: Channel
    nominal_at: datetime  # UTC: the step's day at the policy's send time, local
    send_at: datetime     # UTC: first instant outside quiet hours at or after nominal_at
    key: str              # idempotency key, claimed in the database before any side effect


class CancelReason(StrEnum):
    WITHDRAWN = "withdrawn"
    TIMEPOINT_COMPLETE = "timepoint_complete"
    WINDOW_CLOSED = "window_closed"
    CAP_REACHED = "cap_reached"
    OPTED_OUT = "opted_out"
    NO_CONTACT = "no_contact"


@dataclass(frozen=True)
class ParticipantSnapshot:
    """What the service knows about a participant when it is about to send."""

    withdrawn: bool = False
    opted_out: frozenset[str] = frozenset()
    reachable: frozenset[str] = frozenset()  # channels with contact details on file
    completed_forms: Mapping[str, frozenset[str]] = field(default_factory=dict)  # by timepoint
    sent: Mapping[str, int] = field(default_factory=dict)  # by timepoint; not counting this one


@dataclass(frozen=True)
class DueCheck:
    reason: CancelReason | None = None

    @property
    def due(self) -> bool:
        return self.reason is None

    def __bool__(self) -> bool:
        return self.due


def reminder_key(participant: str, timepoint: str, attempt: int, channel: str) -> str:
    """Deterministic key of one reminder; the same inputs give the same key in any process."""
    raw = "\x1f".join(("reminder", participant, timepoint, str(attempt), channel))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def plan_reminders(
    participant: str, schedule: TimepointSchedule, policy: ReminderPolicy, zone: ZoneInfo
) -> list[PlannedReminder]:
    """Every reminder a non-responder would get at this timepoint, at most the policy's cap."""
    planned = []
    for attempt, step in enumerate(policy.steps[: policy.max_per_timepoint], start=1):
        nominal = local_to_utc(
            schedule.due_on + timedelta(days=step.day), policy.send_time, zone)
        send_at = next_allowed(nominal, zone, policy.quiet_hours)
        if policy.stop_at_window_end and send_at >= schedule.closes_at:
            continue
        planned.append(PlannedReminder(
            participant=participant, timepoint=schedule.timepoint, attempt=attempt,
            channel=step.channel, nominal_at=nominal, send_at=send_at,
            key=reminder_key(participant, schedule.timepoint, attempt, step.channel)))
    return planned


def is_still_due(
    reminder: PlannedReminder,
    schedule: TimepointSchedule,
    snapshot: ParticipantSnapshot,
    policy: ReminderPolicy,
    now: datetime,
) -> DueCheck:
    """Re-check at send time; a falsy result carries the reason to cancel the reminder."""
    now = require_utc(now, "now")
    done = snapshot.completed_forms.get(reminder.timepoint, frozenset())
    if snapshot.withdrawn:
        return DueCheck(CancelReason.WITHDRAWN)
    if all(f in done for f in schedule.forms):
        return DueCheck(CancelReason.TIMEPOINT_COMPLETE)
    if policy.stop_at_window_end and now >= schedule.closes_at:
        return DueCheck(CancelReason.WINDOW_CLOSED)
    if (reminder.attempt > policy.max_per_timepoint
            or snapshot.sent.get(reminder.timepoint, 0) >= policy.max_per_timepoint):
        return DueCheck(CancelReason.CAP_REACHED)
    if reminder.channel in snapshot.opted_out:
        return DueCheck(CancelReason.OPTED_OUT)
    if reminder.channel not in snapshot.reachable:
        return DueCheck(CancelReason.NO_CONTACT)
    return DueCheck()


def cancellations(
    queued: Iterable[PlannedReminder],
    schedules: Iterable[TimepointSchedule],
    snapshot: ParticipantSnapshot,
    policy: ReminderPolicy,
    now: datetime,
) -> list[tuple[PlannedReminder, CancelReason]]:
    """Queued reminders of one participant that are no longer due (after completion,
    withdrawal or opt-out), each with its reason.

    Missing contact details are not a reason to cancel ahead of time: they may still be
    entered before the reminder's moment; `is_still_due` decides that at send time.
    """
    schedules = list(schedules)
    out: list[tuple[PlannedReminder, CancelReason]] = []
    for r in queued:
        check = is_still_due(r, find_schedule(schedules, r.timepoint), snapshot, policy, now)
        if check.reason is not None and check.reason is not CancelReason.NO_CONTACT:
            out.append((r, check.reason))
    return out
