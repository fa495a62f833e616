"""Facts the notifications service publishes. Blinded: never arm, cluster or module."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from .base import Event

__all__ = ["DEAD_LETTER_SUBJECT", "DiaryPromptsCounted", "DispatchFailed", "TimepointCompleted"]

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


class DiaryPromptsCounted(Event):
    """A change to a participant's diary counts of one ISO week (of their local diary
    days): a prompt went out (+1 sent), was answered before it expired (+1 answered), or a
    prompt counted as sent turned out not to be (-1). Changes, not totals: a reader sums
    them per (record, week). Counts only: no prompt times, no answers, no module."""

    subject: ClassVar[str] = "trial.v1.notifications.diary_prompts_counted"
    record: str
    week: str  # ISO 8601 week, e.g. "2026-W49"
    prompts_sent: int = 0  # change in prompts handed to the channel
    answered_in_time: int = 0  # change in those answered before they expired
