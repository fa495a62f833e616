"""Due dates and status of the assessment timepoints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.core.protocol import TrialProtocol
from services.notifications.domain import (
    NotificationError,
    TimepointSchedule,
    TimepointStatus,
    UnknownTimepoint,
    find_schedule,
    schedule_timepoints,
    timepoint_status,
)

from .conftest import BERLIN, CHICAGO


def test_baseline_is_not_scheduled_and_follow_ups_are(schedules: list[TimepointSchedule]):
    assert [s.timepoint for s in schedules] == ["week_4", "week_8", "t1", "t2"]


def test_due_dates_count_local_days_from_allocation(schedules: list[TimepointSchedule]):
    due = {s.timepoint: s.due_on for s in schedules}
    assert due["week_4"] == date(2025, 2, 12)   # +28
    assert due["week_8"] == date(2025, 3, 12)   # +56
    assert due["t1"] == date(2025, 4, 9)        # +84


def test_t2_is_three_months_after_t1_as_the_protocol_says(
        protocol: TrialProtocol, schedules: list[TimepointSchedule]):
    t1, t2 = find_schedule(schedules, "t1"), find_schedule(schedules, "t2")
    assert (t2.due_on - t1.due_on).days == protocol.timepoint_by_key["t2"].offset_days == 91
    assert t2.interview and not t1.interview


def test_window_edges_are_local_midnights_in_utc(schedules: list[TimepointSchedule]):
    w4 = find_schedule(schedules, "week_4")  # window (-3, 14), winter time (UTC+1)
    assert w4.opens_at == datetime(2025, 2, 8, 23, 0, tzinfo=UTC)
    assert w4.closes_at == datetime(2025, 2, 26, 23, 0, tzinfo=UTC)
    assert w4.last_day == date(2025, 2, 26)
    t1 = find_schedule(schedules, "t1")      # summer time (UTC+2) by April
    assert t1.due_at == datetime(2025, 4, 8, 22, 0, tzinfo=UTC)


def test_allocation_late_in_the_evening_counts_from_the_participants_local_day(
        protocol: TrialProtocol):
    # 03:30 UTC on 16 Jan is still 15 Jan, 21:30 in Chicago.
    s = schedule_timepoints(protocol.timepoints, datetime(2025, 1, 16, 3, 30, tzinfo=UTC),
                            CHICAGO)
    assert s[0].due_on == date(2025, 1, 15) + timedelta(days=28)


def test_naive_allocation_time_is_refused(protocol: TrialProtocol):
    with pytest.raises(NotificationError) as err:
        schedule_timepoints(protocol.timepoints, datetime(2025, 1, 15, 13, 0), BERLIN)
    assert err.value.field == "time"


def test_unknown_timepoint_names_the_field(schedules: list[TimepointSchedule]):
    with pytest.raises(UnknownTimepoint) as err:
        find_schedule(schedules, "t9")
    assert err.value.field == "timepoint"


@pytest.mark.parametrize(("now", "forms", "status"), [
    (datetime(2025, 2, 8, 22, 59, tzinfo=UTC), set(), TimepointStatus.NOT_DUE),
    (datetime(2025, 2, 8, 23, 0, tzinfo=UTC), set(), TimepointStatus.DUE),
    (datetime(2025, 2, 20, tzinfo=UTC), {"pgic"}, TimepointStatus.IN_PROGRESS),
    (datetime(2025, 2, 20, tzinfo=UTC), {"pgic", "mpid_ps"}, TimepointStatus.COMPLETE),
    (datetime(2025, 2, 26, 23, 0, tzinfo=UTC), {"pgic"}, TimepointStatus.OVERDUE),
    (datetime(2025, 6, 1, tzinfo=UTC), {"pgic", "mpid_ps", "other"}, TimepointStatus.COMPLETE),
])
def test_status_from_completed_forms_and_window(
        schedules: list[TimepointSchedule], now: datetime, forms: set[str],
        status: TimepointStatus):
    assert timepoint_status(find_schedule(schedules, "week_4"), forms, now).status is status


def test_partial_completion_counts_as_progress(schedules: list[TimepointSchedule]):
    t1 = find_schedule(schedules, "t1")
    p = timepoint_status(t1, {"hads", "panas"}, datetime(2025, 4, 20, tzinfo=UTC))
    assert p.status is TimepointStatus.IN_PROGRESS
    assert p.completed == ("hads", "panas")
    assert p.fraction == pytest.approx(2 / 8)
