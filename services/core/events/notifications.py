"""Facts the notifications service publishes. Blinded: never arm, cluster or module."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from .base import Event

__all__ = ["DEAD_LETTER_SUBJECT", "DispatchFailed", "TimepointCompleted"]

DEAD_LETTER_SUBJECT = "trial.dlq.notifications"


class DispatchFailed(Event):
    """A message could not be sent and will not be retried (permanent failure or retries
    used up). Published on the dead-letter stream (`trial.dlq.notifications`) where ops
    inspect dead letters; carries no contact details and no message text."""

    subject: ClassVar[str] = DEAD_LETTER_SUBJECT
    message_key: str
    kind: str  # reminder | diary_prompt | safety_notice
    record: str
    timepoint: str | None = None
    attempt: int | None = None
    channel: str
    reason: str  # permanent | retries_exhausted | unknown_outcome
    error: str
    tries: int
    failed_at: datetime


class TimepointCompleted(Event):
    """Every form of a participant's timepoint is complete; its reminders are cancelled."""

    subject: ClassVar[str] = "trial.v1.notifications.timepoint_completed"
    record: str
    timepoint: str
    completed_at: datetime
    reminders_sent: int
