"""Every query of the REDCap integration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, update
from sqlmodel import Session, col, func, select

from .models import RedcapSnapshot, RedcapSweep, RedcapTrigger, RedcapWrite

# Data Entry Triggers first (a person just saved), then sweep findings; oldest first within.
_PRIORITY = (case((col(RedcapTrigger.source) == "det", 0), else_=1), col(RedcapTrigger.received_at))


def due_triggers(session: Session, now: datetime, limit: int = 50) -> list[RedcapTrigger]:
    return list(session.exec(
        select(RedcapTrigger).where(RedcapTrigger.status == "pending",
                                    col(RedcapTrigger.next_attempt_at) <= now)
        .order_by(*_PRIORITY).limit(limit)))


def first_waiting_trigger(session: Session) -> list[RedcapTrigger]:
    """The pending trigger that comes next once REDCap answers: a probe while it is down."""
    return list(session.exec(select(RedcapTrigger).where(RedcapTrigger.status == "pending")
                             .order_by(*_PRIORITY).limit(1)))


def first_waiting_write(session: Session) -> list[RedcapWrite]:
    return list(session.exec(select(RedcapWrite).where(RedcapWrite.status == "pending")
                             .order_by(col(RedcapWrite.created_at)).limit(1)))


def release_backoff(session: Session, now: datetime) -> int:
    """REDCap answers again: everything waiting out a retry delay is due now (the drains'
    lanes bound how many calls go out at once). Returns how many rows were released."""
    released = 0
    for table in (RedcapTrigger, RedcapWrite):
        result = session.execute(
            update(table).where(col(table.status) == "pending", col(table.next_attempt_at) > now,
                                col(table.last_error).is_not(None))
            .values(next_attempt_at=now))
        released += result.rowcount or 0  # type: ignore[attr-defined]
    return released


def due_writes(session: Session, now: datetime, limit: int = 50) -> list[RedcapWrite]:
    return list(session.exec(
        select(RedcapWrite).where(RedcapWrite.status == "pending",
                                  col(RedcapWrite.next_attempt_at) <= now)
        .order_by(col(RedcapWrite.created_at)).limit(limit)))


def pending_count(session: Session, table: type[RedcapTrigger] | type[RedcapWrite]) -> int:
    return session.exec(select(func.count()).select_from(table).where(table.status == "pending")).one()


def snapshot(session: Session, project_id: int, record: str, event: str, instrument: str,
             repeat_instance: int) -> RedcapSnapshot | None:
    return session.get(RedcapSnapshot, (project_id, record, event, instrument, repeat_instance))


def snapshots_of(session: Session, project_id: int) -> dict[tuple[str, str, str, int], str]:
    rows = session.exec(select(RedcapSnapshot).where(RedcapSnapshot.project_id == project_id))
    return {(r.record, r.event, r.instrument, r.repeat_instance): r.data_hash for r in rows}


def sweep_state(session: Session, project_id: int) -> RedcapSweep | None:
    return session.get(RedcapSweep, project_id)


def pending_for_form(session: Session, key: str) -> RedcapTrigger | None:
    """The pending trigger of a form, locked (PostgreSQL) so that a merge and the worker
    finishing that trigger cannot interleave; SQLite serialises writers anyway."""
    return session.exec(select(RedcapTrigger).where(RedcapTrigger.status == "pending",
                                                    RedcapTrigger.form_key == key)
                        .with_for_update()).first()


def last_replay(session: Session, key: str) -> datetime | None:
    """When this form was last fetched, if that fetch found nothing new (the trigger was a
    replay, or a save that changed nothing); None when the last fetch published a change
    or the form was never fetched."""
    last = session.exec(select(RedcapTrigger)
                        .where(RedcapTrigger.form_key == key, col(RedcapTrigger.done_at).is_not(None))
                        .order_by(col(RedcapTrigger.done_at).desc()).limit(1)).first()
    return last.done_at if last is not None and last.status == "unchanged" else None
