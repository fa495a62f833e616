"""Idempotent consumption: an event id is recorded in the same transaction as its effect."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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


_TABLE = InboxEntry.__table__  # type: ignore[attr-defined]
# Built once per dialect (composing it cost more than running it); values come as parameters.
_CLAIM = {name: insert(_TABLE).on_conflict_do_nothing(index_elements=["consumer", "event_id"])
          .returning(_TABLE.c.event_id)
          for name, insert in (("sqlite", sqlite_insert), ("postgresql", pg_insert))}


def claim(session: Session, consumer: str, event_id: str) -> bool:
    """True if this event is new for this consumer (and is now recorded as processed).

    One statement: INSERT … ON CONFLICT DO NOTHING (SQLite and PostgreSQL), instead of a
    lookup, a savepoint and an insert. A concurrent replica's row makes it a no-op (on
    PostgreSQL the insert waits for that replica's transaction and then sees its row)."""
    statement = _CLAIM.get(session.get_bind().dialect.name)
    if statement is None:
        return _claim_portably(session, consumer, event_id)
    # RETURNING, not rowcount: psycopg reports no reliable count for a skipped row.
    row = {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}
    return session.connection().execute(statement, row).first() is not None


def _claim_portably(session: Session, consumer: str, event_id: str) -> bool:
    if session.get(InboxEntry, (consumer, event_id)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(InboxEntry(consumer=consumer, event_id=event_id))
            session.flush()
    except IntegrityError:  # a concurrent replica recorded it first
        return False
    return True
