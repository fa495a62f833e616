"""Small pure helpers for pages: path segments, durations, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote


def seg(value: str) -> str:
    """A value as one URL path segment (never a separator)."""
    return quote(value, safe="")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    """`2 d 3 h`, `5 h 12 min`, `40 min`: precise enough to act on."""
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def countdown(deadline: str | None, now: datetime) -> tuple[str, str]:
    """(text, tone) for a deadline: time left, or how long ago it passed."""
    at = parse_time(deadline)
    if at is None:
        return "no deadline", "muted"
    left = (at - now).total_seconds()
    if left < 0:
        return f"overdue by {duration(left)}", "bad"
    return f"{duration(left)} left", "warn" if left < 24 * 3600 else "ok"
