"""Tell the reports service how a diary participant's weeks are going: every change to the
number of prompts that went out, or that were answered in time, is staged in the outbox in
the transaction that makes it (`DiaryPromptsCounted`, counts only).

Changes, not totals: two transactions about one participant (a prompt going out while the
previous one is answered) each add their own change, so no lock and no ordering is needed
and the sum is exact; the consumers' inbox applies each event once.
"""

from __future__ import annotations

from sqlmodel import Session

from services.core import outbox
from services.core.events import DiaryPromptsCounted

from .domain.diary_weeks import diary_day, iso_week
from .models import Message, Participant

SERVICE = "notifications"


def count_change(session: Session, message: Message | None, *, sent: int = 0,
                 answered: int = 0, correlation_id: str | None = None) -> bool:
    """Stage `sent` / `answered` (+1 or -1) for `message`'s diary week; False (nothing
    staged) for anything that is not a diary prompt of a diary participant."""
    if message is None or message.kind != "diary_prompt" or not message.ref or not (
            sent or answered):
        return False
    participant = session.get(Participant, message.record)
    if participant is None or participant.diary_first_day is None:
        return False
    week = iso_week(participant.diary_first_day, diary_day(message.ref))
    outbox.enqueue(session, DiaryPromptsCounted(
        record=message.record, week=week, prompts_sent=sent, answered_in_time=answered),
        producer=SERVICE, record=message.record, correlation_id=correlation_id)
    return True
