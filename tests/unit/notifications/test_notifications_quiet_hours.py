"""Quiet hours in the participant's zone, across both DST changes.

Europe/Berlin: spring forward 30 Mar 2025 02:00→03:00; fall back 26 Oct 2025 03:00→02:00.
America/Chicago: spring forward 9 Mar 2025 02:00→03:00; fall back 2 Nov 2025 02:00→01:00.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.core.protocol.notifications import QuietHours
from services.notifications.domain import (
    InvalidTimezone,
    is_quiet,
    local_to_utc,
    next_allowed,
    participant_zone,
)

from .conftest import BERLIN, CHICAGO

NIGHT = QuietHours(start=time(20), end=time(8))
NIGHT_AND_SUNDAY = QuietHours(start=time(20), end=time(8), days=["sunday"])
# A window that ends inside the spring-forward gap, to exercise the gap rule.
ENDS_IN_GAP = QuietHours(start=time(22), end=time(2, 30))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_nonexistent_local_time_moves_forward_by_the_gap():
    assert local_to_utc(date(2025, 3, 30), time(2, 30), BERLIN) == utc(2025, 3, 30, 1, 30)
    assert local_to_utc(date(2025, 3, 9), time(2, 30), CHICAGO) == utc(2025, 3, 9, 8, 30)
    assert utc(2025, 3, 30, 1, 30).astimezone(BERLIN).time() == time(3, 30)


def test_ambiguous_local_time_takes_the_first_occurrence():
    # 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET) in Berlin.
    assert local_to_utc(date(2025, 10, 26), time(2, 30), BERLIN) == utc(2025, 10, 26, 0, 30)
    # 01:30 happens at 06:30 UTC (CDT) and again at 07:30 UTC (CST) in Chicago.
    assert local_to_utc(date(2025, 11, 2), time(1, 30), CHICAGO) == utc(2025, 11, 2, 6, 30)


@pytest.mark.parametrize(("zone", "night", "morning"), [
    (BERLIN, date(2025, 3, 29), utc(2025, 3, 30, 6, 0)),    # 08:00 CEST after the jump
    (BERLIN, date(2025, 10, 25), utc(2025, 10, 26, 7, 0)),  # 08:00 CET after the repeat
    (CHICAGO, date(2025, 3, 8), utc(2025, 3, 9, 13, 0)),    # 08:00 CDT
    (CHICAGO, date(2025, 11, 1), utc(2025, 11, 2, 14, 0)),  # 08:00 CST
])
def test_reminder_in_a_dst_night_moves_to_eight_local_in_the_new_offset(
        zone: ZoneInfo, night: date, morning: datetime):
    for local in (time(20, 0), time(23, 59)):
        assert next_allowed(local_to_utc(night, local, zone), zone, NIGHT) == morning
    # Every instant of the changing night, including the skipped/repeated hour.
    start = local_to_utc(night, time(20), zone)
    for minutes in range(0, int((morning - start).total_seconds() // 60), 17):
        moment = start + timedelta(minutes=minutes)
        assert is_quiet(moment, zone, NIGHT)
        assert next_allowed(moment, zone, NIGHT) == morning
    assert not is_quiet(morning, zone, NIGHT)


@pytest.mark.parametrize("zone", [BERLIN, CHICAGO])
def test_both_occurrences_of_the_repeated_hour_are_quiet(zone: ZoneInfo):
    night = {BERLIN: date(2025, 10, 26), CHICAGO: date(2025, 11, 2)}[zone]
    first = local_to_utc(night, time(1, 30), zone)
    for moment in (first, first + timedelta(hours=1)):
        assert is_quiet(moment, zone, NIGHT)


def test_quiet_end_inside_the_spring_gap_is_moved_forward_by_the_gap():
    moment = local_to_utc(date(2025, 3, 29), time(23), BERLIN)
    allowed = next_allowed(moment, BERLIN, ENDS_IN_GAP)
    assert allowed == utc(2025, 3, 30, 1, 30)  # 02:30 does not exist: 03:30 CEST
    assert allowed.astimezone(BERLIN).time() == time(3, 30)


def test_quiet_end_inside_the_autumn_overlap_takes_the_first_occurrence():
    moment = local_to_utc(date(2025, 10, 25), time(23), BERLIN)
    assert next_allowed(moment, BERLIN, ENDS_IN_GAP) == utc(2025, 10, 26, 0, 30)


def test_quiet_sunday_moves_to_monday_morning_not_sunday_night():
    saturday_night = local_to_utc(date(2025, 3, 29), time(21), BERLIN)  # DST weekend too
    assert next_allowed(saturday_night, BERLIN, NIGHT_AND_SUNDAY) == utc(2025, 3, 31, 6, 0)
    sunday_noon = local_to_utc(date(2025, 11, 2), time(12), CHICAGO)
    assert next_allowed(sunday_noon, CHICAGO, NIGHT_AND_SUNDAY) == utc(2025, 11, 3, 14, 0)


def test_allowed_time_is_left_alone():
    moment = local_to_utc(date(2025, 3, 31), time(8), BERLIN)
    assert next_allowed(moment, BERLIN, NIGHT_AND_SUNDAY) == moment
    assert next_allowed(moment - timedelta(seconds=1), BERLIN, NIGHT_AND_SUNDAY) == moment


def test_daytime_quiet_window_that_does_not_wrap_midnight():
    lunch = QuietHours(start=time(12), end=time(14))
    moment = local_to_utc(date(2025, 6, 3), time(12, 30), BERLIN)
    assert next_allowed(moment, BERLIN, lunch) == local_to_utc(date(2025, 6, 3), time(14), BERLIN)


def test_output_is_utc_and_naive_input_is_refused():
    out = next_allowed(utc(2025, 1, 1, 22, 0), BERLIN, NIGHT)
    assert out.tzinfo is UTC
    with pytest.raises(ValueError):
        next_allowed(datetime(2025, 1, 1, 22, 0), BERLIN, NIGHT)


def test_unknown_zone_is_a_typed_error_naming_the_field():
    assert participant_zone(None, "Europe/Berlin") == BERLIN
    with pytest.raises(InvalidTimezone) as err:
        participant_zone("Mars/Olympus_Mons", "Europe/Berlin")
    assert err.value.field == "timezone"
