"""Every query of the REDCap integration."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, func, select

from .models import RedcapSnapshot, RedcapSweep, RedcapTrigger, RedcapWrite


def due_triggers(session: Session, now: datetime, limit: int = 50) -> list[RedcapTrigger]:
    return list(session.exec(
        select(RedcapTrigger).where(RedcapTrigger.status == "pending",
                                    col(RedcapTrigger.next_attempt_at) <= now)
        .order_by(col(RedcapTrigger.received_at)).limit(limit)))


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


def pending_untouched(session: Session, project_id: int, record: str, event: str | None,
                      instrument: str, repeat_instance: int | None) -> RedcapTrigger | None:
    """A stored trigger for the same form whose fetch has not been tried yet: it will fetch
    whatever is saved by then, so a second identical trigger adds nothing."""
    return session.exec(
        select(RedcapTrigger).where(
            RedcapTrigger.status == "pending", RedcapTrigger.attempts == 0,
            RedcapTrigger.project_id == project_id, RedcapTrigger.record == record,
            col(RedcapTrigger.event).is_(None) if event is None else RedcapTrigger.event == event,
            RedcapTrigger.instrument == instrument,
            col(RedcapTrigger.repeat_instance).is_(None) if repeat_instance is None
            else RedcapTrigger.repeat_instance == repeat_instance)
        .limit(1)).first()
