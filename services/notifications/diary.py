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
from .domain import DeliveryState, DiaryParticipant, diary_prompts, local_day, prompt_key
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


def mark_answered(session: Session, rt: Runtime, record: str, *, instance: int | None = None,
                  correlation_id: str | None = None) -> str | None:
    """A diary answer was saved complete in REDCap: the key of the prompt it answers in
    time, or None (late, unknown, already counted).

    `instance` (the answer survey's repeat instance) names the prompt: one instance per
    prompt, so a re-saved answer, or the sweep finding it again, counts once. Without it
    (an answer form that does not repeat) the answer goes to the participant's latest
    prompt still open. Only an answer before the prompt expires counts; a late one is
    audited and not counted."""
    now = rt.now()
    if instance is None:
        prompt = repository.answerable_prompt(session, record, now)
    else:
        prompt = _prompt_of_instance(session, rt, record, instance, now,
                                     correlation_id=correlation_id)
    if prompt is None:
        return None
    prompt.answered_at = now
    session.add(prompt)
    audit.append(session, actor="service:notifications", role="system",
                 action="diary.prompt_answered", entity_type="message", entity_id=prompt.key,
                 record=record, after={"answered_at": now, "instance": instance},
                 correlation_id=correlation_id)
    count_change(session, prompt, answered=1, correlation_id=correlation_id)  # open: in time
    return prompt.key


# A prompt's link is fetched when it is claimed, so an answer may overtake the commit that
# records the prompt as sent; the claim is enough to know the link went out with it.
_ANSWERABLE = (*repository.LEFT_US, DeliveryState.CLAIMED)


def _prompt_of_instance(session: Session, rt: Runtime, record: str, instance: int,
                        now: datetime, *, correlation_id: str | None) -> Message | None:
    try:
        day, index = rt.protocol.diary_policy.prompt_of(instance)
    except ValueError:
        return None  # not one of the diary's instances: nothing Tailor prompted
    prompt = repository.message(session, prompt_key(record, day, index))
    if (prompt is None or prompt.kind != "diary_prompt" or prompt.answered_at is not None
            or prompt.state not in _ANSWERABLE):
        return None
    if prompt.expires_at is not None and now >= prompt.expires_at:
        audit.append(session, actor="service:notifications", role="system",
                     action="diary.prompt_answered_late", entity_type="message",
                     entity_id=prompt.key, record=record,
                     after={"answered_at": now, "instance": instance},
                     correlation_id=correlation_id)
        return None
    return prompt
