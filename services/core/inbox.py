"""Idempotent consumption: an event id is recorded in the same transaction as its effect."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel

from .db import UtcDateTime


class InboxEntry(SQLModel, table=True):
    __tablename__ = "inbox_entry"

    consumer: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    processed_at: datetime = Field(
        sa_column=Column(UtcDateTime(), nullable=False),
        default_factory=lambda: datetime.now(UTC),
    )


def claim(session: Session, consumer: str, event_id: str) -> bool:
    """True if this event is new for this consumer (and is now recorded as processed)."""
    if session.get(InboxEntry, (consumer, event_id)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(InboxEntry(consumer=consumer, event_id=event_id))
            session.flush()
    except IntegrityError:  # a concurrent replica recorded it first
        return False
    return True
