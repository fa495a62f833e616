"""Tables of the REDCap integration (migrations gateway_0003, gateway_0004, gateway_0007)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime

PENDING = text("status = 'pending'")


def form_key(project_id: int, record: str, event: str | None, instrument: str,
             repeat_instance: int | None) -> str:
    """One form of one record: what at most one pending trigger may stand for. Record
    names cannot hold "|" (see trigger.RECORD), so the key is unambiguous."""
    return f"{project_id}|{record}|{event or ''}|{instrument}|{repeat_instance or 0}"


class RedcapTrigger(SQLModel, table=True):
    """A Data Entry Trigger (or a sweep finding), stored before REDCap gets its 200.
    Further notifications for a form with a pending trigger merge into it (`revision`)."""

    __tablename__ = "redcap_trigger"
    __table_args__ = (
        Index("ux_redcap_trigger_pending_form", "form_key", unique=True,
              sqlite_where=PENDING, postgresql_where=PENDING),
        Index("ix_redcap_trigger_due", "status", "next_attempt_at"),
        Index("ix_redcap_trigger_form_done", "form_key", "done_at"),  # replay coalescing
    )

    id: str = Field(primary_key=True)
    source: str  # det | sweep (a DET merged into a sweep finding makes it a det)
    form_key: str
    revision: int = 0  # +1 per merged notification: a fetch in flight then fetches again
    project_id: int
    record: str
    event: str | None = None
    instrument: str
    repeat_instance: int | None = None
    body: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    status: str = "pending"  # pending | published | unchanged
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    done_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class RedcapSnapshot(SQLModel, table=True):
    """Hash of a form's data as last published: an unchanged re-save publishes nothing."""

    __tablename__ = "redcap_snapshot"

    project_id: int = Field(primary_key=True)
    record: str = Field(primary_key=True)
    event: str = Field(primary_key=True)
    instrument: str = Field(primary_key=True)
    repeat_instance: int = Field(primary_key=True)
    data_hash: str
    event_id: str
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class RedcapWrite(SQLModel, table=True):
    """A write-back to REDCap, keyed by the event that caused it (idempotent)."""

    __tablename__ = "redcap_write"
    __table_args__ = (Index("ix_redcap_write_due", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True)
    kind: str
    project_id: int
    record: str
    event: str | None = None
    fields: str = Field(sa_column=Column(Text, nullable=False))
    status: str = "pending"  # pending | written | failed
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    written_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    correlation_id: str | None = None


class RedcapSweep(SQLModel, table=True):
    __tablename__ = "redcap_sweep"

    project_id: int = Field(primary_key=True)
    swept_until: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    last_run_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
