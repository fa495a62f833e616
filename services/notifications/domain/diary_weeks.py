"""The ISO week a diary prompt counts in, for what the reports service is told.

A prompt's diary day is in its `ref` ("<day>.<index>"); day 0 is the participant's local
`first_day`, so the week is that of the participant's own calendar and needs no time zone.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from .errors import NotificationError


def diary_prompt_ref(ref: str) -> tuple[int, int]:
    """(day, index) of a prompt's `ref` ("<day>.<index>")."""
    day, _, index = ref.partition(".")
    if not (day.isdigit() and index.isdigit()):
        raise NotificationError(f"{ref!r} is not a diary prompt reference", field="ref")
    return int(day), int(index)


def diary_day(ref: str) -> int:
    return diary_prompt_ref(ref)[0]


def iso_week(first_day: date, day: int) -> str:
    """ISO 8601 week ("2026-W49") of diary day `day`."""
    year, week, _ = (first_day + timedelta(days=day)).isocalendar()
    return f"{year}-W{week:02d}"


def answered_in_time(answered_at: datetime | None, expires_at: datetime | None) -> bool:
    return answered_at is not None and (expires_at is None or answered_at < expires_at)
