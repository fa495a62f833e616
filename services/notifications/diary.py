"""Diary prompts generated ahead in small batches (the background job calls this daily).

Prompt times come from the pure `domain.diary_prompts` (counter-based, so a batch gives
the same prompts as generating the whole diary at once). Days already past when a batch is
made (the service was down, or the allocation arrived late) are skipped, never prompted late.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from services.core import audit

from . import contacts, repository
from .diary_tally import count_change
from .domain import DeliveryState, DiaryParticipant, diary_prompts, local_day
from .models import Message, Participant
from .runtime import Runtime


def extend_diary(session: Session, rt: Runtime, participant: Participant, now: datetime) -> int:
    """Create the prompts up to `diary_ahead_days` from today; the number created."""
    policy = rt.protocol.diary_policy
    first = participant.diary_first_day
    if (not participant.diary or first is None or participant.withdrawn_at is not None
            or participant.diary_horizon >= policy.days):
        return 0
    details = contacts.load(session, rt, participant.record)
    zone = contacts.zone_of(rt, details)
    today = (local_day(now, zone) - first).days
    start = max(participant.diary_horizon, today)
    end = min(policy.days, today + rt.settings.diary_ahead_days)
    if end <= start:
        return 0
    batch = diary_prompts([DiaryParticipant(participant.record, zone.key, first)], policy,
                          seed=rt.diary_seed(), from_day=start, days=end - start)
    for p in batch.prompts():
        session.add(Message(
            key=p.key, kind="diary_prompt", record=participant.record, channel=policy.channel,
            ref=f"{p.day}.{p.index}", due_at=p.at, not_before=p.at, expires_at=p.expires_at,
            state=DeliveryState.SCHEDULED, tries=0, created_at=now, updated_at=now))
    skipped = start - participant.diary_horizon
    participant.diary_horizon = end
    session.add(participant)
    session.flush()
    audit.append(session, actor="service:notifications", role="system",
                 action="diary.prompts_scheduled", entity_type="participant",
                 entity_id=participant.record, record=participant.record,
                 after={"from_day": start, "days": end - start, "prompts": len(batch),
                        "skipped_days": skipped})
    return len(batch)


def mark_answered(session: Session, rt: Runtime, record: str, *,
                  correlation_id: str | None = None) -> str | None:
    """A diary answer arrived: the open prompt it answers (None if none is open)."""
    now = rt.now()
    prompt = repository.answerable_prompt(session, record, now)
    if prompt is None:
        return None
    prompt.answered_at = now
    session.add(prompt)
    audit.append(session, actor="service:notifications", role="system",
                 action="diary.prompt_answered", entity_type="message", entity_id=prompt.key,
                 record=record, after={"answered_at": now}, correlation_id=correlation_id)
    count_change(session, prompt, answered=1, correlation_id=correlation_id)  # open: in time
    return prompt.key
