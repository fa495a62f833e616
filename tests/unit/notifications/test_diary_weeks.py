"""The ISO week a diary prompt is counted in: the participant's own calendar (day 0 is
their local first diary day), across month and year ends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from services.notifications.domain import NotificationError
from services.notifications.domain.diary_weeks import answered_in_time, diary_day, iso_week


def test_weeks_follow_the_local_calendar_across_the_year_end() -> None:
    first = date(2025, 12, 30)  # a Tuesday of ISO week 2026-W01
    assert [iso_week(first, d) for d in (0, 5, 6, 12, 13)] == [  # Tue, Sun, Mon, Sun, Mon
        "2026-W01", "2026-W01", "2026-W02", "2026-W02", "2026-W03"]
    assert iso_week(date(2026, 12, 28), 0) == "2026-W53"


def test_a_prompt_reference_names_its_diary_day() -> None:
    assert diary_day("0.3") == 0 and diary_day("83.9") == 83
    for bad in ("", "3", "a.1", "-1.2", "1.x"):
        with pytest.raises(NotificationError):
            diary_day(bad)


def test_an_answer_counts_only_before_the_prompt_expired() -> None:
    at = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert answered_in_time(at, at + timedelta(minutes=1))
    assert not answered_in_time(at, at)
    assert not answered_in_time(None, at)
