"""Local wall-clock time in a participant's IANA zone, and quiet hours.

Everything entering or leaving this module is a timezone-aware UTC datetime; the
participant's zone is used only to decide *when* to contact them.

The rule for local times that do not map to exactly one instant (PEP 495):

- a local time inside a spring-forward gap (e.g. 02:30 on the last Sunday of March in
  Europe/Berlin) does not exist; it is moved forward by the length of the gap (02:30 → 03:30
  local), i.e. the instant a clock that missed the jump would show;
- a local time inside a fall-back overlap (e.g. 02:30 on the last Sunday of October in
  Europe/Berlin) happens twice; the earlier occurrence (still summer time) is taken, so a
  reminder is never held back by the repeated hour.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.core.protocol.notifications import QuietHours

from .errors import InvalidTimezone, NotificationError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def participant_zone(name: str | None, default: str) -> ZoneInfo:
    """The participant's zone, or the protocol default when they gave none."""
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidTimezone(f"{name!r} is not an IANA time zone", field="timezone") from None


def require_utc(moment: datetime, field: str = "time") -> datetime:
    """Refuse naive datetimes; normalise aware ones to UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise NotificationError(f"{field} must be timezone-aware", field=field)
    return moment.astimezone(UTC)


def local_to_utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local wall time `day at` in `zone` (gap → forward, overlap → first).

    With fold=0, PEP 495 interprets a time in a gap with the offset in force *before* the
    transition (summer-time gaps therefore land one gap-length later) and an ambiguous time
    as its first occurrence: exactly the documented rule.
    """
    return datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone).replace(
        fold=0).astimezone(UTC)


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    """The participant's calendar date at a UTC instant."""
    return require_utc(moment).astimezone(zone).date()


def _in_nightly(t: time, quiet: QuietHours) -> bool:
    if quiet.start == quiet.end:  # no nightly quiet time configured
        return False
    if quiet.start < quiet.end:
        return quiet.start <= t < quiet.end
    return t >= quiet.start or t < quiet.end  # wraps midnight


def is_quiet(moment: datetime, zone: ZoneInfo, quiet: QuietHours) -> bool:
    """Whether `moment` falls inside quiet hours or on a quiet day, in local time."""
    local = require_utc(moment).astimezone(zone)
    if WEEKDAYS[local.weekday()] in quiet.days:
        return True
    return _in_nightly(local.time().replace(tzinfo=None), quiet)


def _next_candidate(local: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """The next instant at which a quiet stretch containing `local` could end."""
    d, t = local.date(), local.time().replace(tzinfo=None)
    if WEEKDAYS[local.weekday()] in quiet.days:
        return local_to_utc(d + timedelta(days=1), time(0), zone)
    # Inside the nightly window: it ends at `end` today, unless we are in the evening part
    # of a window that wraps midnight, which ends tomorrow.
    evening_of_wrap = quiet.start > quiet.end and t >= quiet.start
    end_day = d + timedelta(days=1) if evening_of_wrap else d
    return local_to_utc(end_day, quiet.end, zone)


def next_allowed(moment: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime:
    """`moment` if contact is allowed then, else the first allowed instant after it (UTC)."""
    current = require_utc(moment)
    for _ in range(2 * len(WEEKDAYS) + 2):  # quiet days are < 7, so this always converges
        if not is_quiet(current, zone, quiet):
            return current
        candidate = _next_candidate(current.astimezone(zone), zone, quiet)
        # A gap can map the end of quiet time to an instant not after `current`; step past it.
        current = candidate if candidate > current else current + timedelta(minutes=1)
    raise NotificationError("quiet hours leave no time to send", field="quiet_hours")
