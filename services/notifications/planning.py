"""Re-planning when a participant's time zone becomes known or changes after allocation
(the consent form and the allocation travel on separate subjects and may arrive in either
order). Only what has not started moves: reminders still scheduled and never tried, and
diary prompts still scheduled. The zone itself is never audited (it is contact data)."""

from __future__ import annotations

from sqlmodel import Session

from services.core import audit

from . import contacts, repository
from .domain import DiaryParticipant, diary_prompts, plan_reminders, schedule_timepoints
from .runtime import Runtime


def replan(session: Session, rt: Runtime, record: str, *,
           correlation_id: str | None = None) -> int:
    """Move queued reminders and prompts to the participant's zone; how many moved."""
    participant = repository.participant(session, record)
    if participant is None or participant.withdrawn_at is not None:
        return 0
    zone = contacts.zone_of(rt, contacts.load(session, rt, record))
    rows = {r.timepoint: r for r in repository.timepoints(session, record)}
    queued = {m.key: m for m in repository.messages_of(session, record)
              if m.state == "scheduled" and m.tries == 0}
    moved = 0
    for sched in schedule_timepoints(rt.protocol.timepoints, participant.allocated_at, zone):
        row = rows.get(sched.timepoint)
        if row is not None and row.completed_at is None:
            row.due_on, row.last_day = sched.due_on, sched.last_day
            row.opens_at, row.due_at, row.closes_at = sched.opens_at, sched.due_at, sched.closes_at
            session.add(row)
        for planned in plan_reminders(record, sched, rt.protocol.reminders, zone):
            msg = queued.get(planned.key)
            if msg is not None and msg.due_at != planned.send_at:
                msg.due_at = msg.not_before = planned.send_at
                session.add(msg)
                moved += 1
    moved += _retime_prompts(session, rt, record, zone.key, queued)
    if moved:
        audit.append(session, actor="service:notifications", role="system",
                     action="schedule.replanned", entity_type="participant", entity_id=record,
                     record=record, reason="time zone on the consent form changed",
                     after={"moved": moved}, correlation_id=correlation_id)
    return moved


def _retime_prompts(session: Session, rt: Runtime, record: str, zone: str,
                    queued: dict) -> int:  # type: ignore[type-arg]
    participant = repository.participant(session, record)
    prompts = [m for m in queued.values() if m.kind == "diary_prompt" and m.ref]
    if participant is None or participant.diary_first_day is None or not prompts:
        return 0
    days = sorted({int(m.ref.split(".")[0]) for m in prompts})
    batch = diary_prompts([DiaryParticipant(record, zone, participant.diary_first_day)],
                          rt.protocol.diary_policy, seed=rt.diary_seed(), from_day=days[0],
                          days=days[-1] - days[0] + 1)
    moved = 0
    for p in batch.prompts():
        msg = queued.get(p.key)
        if msg is not None and msg.due_at != p.at:
            msg.due_at = msg.not_before = p.at
            msg.expires_at = p.expires_at
            session.add(msg)
            moved += 1
    return moved
