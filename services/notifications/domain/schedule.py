"""When each assessment timepoint falls due for a participant, and where they stand.

Dates are the participant's local calendar dates (a timepoint "at week 4" is 28 local days
after the day of allocation); the window's edges are local midnights expressed in UTC.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from services.core.protocol import Timepoint

from .clock import local_day, local_to_utc, require_utc
from .errors import UnknownTimepoint

ALLOCATION = "allocation"


class TimepointStatus(StrEnum):
    NOT_DUE = "not_due"          # window not yet open
    DUE = "due"                  # window open, nothing completed
    IN_PROGRESS = "in_progress"  # some forms complete (assessments may take several sittings)
    COMPLETE = "complete"        # every form complete, whenever that happened
    OVERDUE = "overdue"          # window closed and not complete


@dataclass(frozen=True)
class TimepointSchedule:
    timepoint: str
    redcap_event: str
    forms: tuple[str, ...]
    interview: bool
    due_on: date         # participant's local date
    last_day: date       # last local day of the window ("please respond by")
    opens_at: datetime   # UTC, local midnight starting the window
    due_at: datetime     # UTC, local midnight starting the due day
    closes_at: datetime  # UTC, local midnight ending the window (exclusive)


@dataclass(frozen=True)
class TimepointProgress:
    status: TimepointStatus
    completed: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def fraction(self) -> float:
        return len(self.completed) / (len(self.completed) + len(self.missing))


def schedule_timepoints(
    timepoints: Sequence[Timepoint], allocated_at: datetime, zone: ZoneInfo
) -> list[TimepointSchedule]:
    """Due dates of every timepoint anchored (directly or through others) on allocation.

    A timepoint anchored on an earlier timepoint counts from that one's *planned* due date
    (T2 = T1's due date + offset), so a late T1 does not shift T2. Timepoints anchored
    before allocation (the baseline) are not scheduled.
    """
    due: dict[str, date] = {ALLOCATION: local_day(allocated_at, zone)}
    schedules = []
    for tp in timepoints:
        if tp.anchor not in due:
            continue
        due_on = due[tp.anchor] + timedelta(days=tp.offset_days)
        due[tp.key] = due_on
        before, after = tp.window_days
        schedules.append(TimepointSchedule(
            timepoint=tp.key,
            redcap_event=tp.redcap_event,
            forms=tuple(tp.forms),
            interview="interview" in tp.mode,
            due_on=due_on,
            last_day=due_on + timedelta(days=after),
            opens_at=local_to_utc(due_on + timedelta(days=before), time(0), zone),
            due_at=local_to_utc(due_on, time(0), zone),
            closes_at=local_to_utc(due_on + timedelta(days=after + 1), time(0), zone),
        ))
    return schedules


def find_schedule(schedules: Iterable[TimepointSchedule], timepoint: str) -> TimepointSchedule:
    for s in schedules:
        if s.timepoint == timepoint:
            return s
    raise UnknownTimepoint(f"{timepoint!r} is not a scheduled timepoint", field="timepoint")


def timepoint_status(
    schedule: TimepointSchedule, completed_forms: Collection[str], now: datetime
) -> TimepointProgress:
    """Status at `now` given the forms (of this timepoint's event) saved as complete."""
    now = require_utc(now, "now")
    done = tuple(f for f in schedule.forms if f in completed_forms)
    missing = tuple(f for f in schedule.forms if f not in completed_forms)
    if not missing:
        status = TimepointStatus.COMPLETE
    elif now >= schedule.closes_at:
        status = TimepointStatus.OVERDUE
    elif done:
        status = TimepointStatus.IN_PROGRESS
    elif now >= schedule.opens_at:
        status = TimepointStatus.DUE
    else:
        status = TimepointStatus.NOT_DUE
    return TimepointProgress(status=status, completed=done, missing=missing)
