"""Tables the notifications service owns (created by migrations/versions/0002_*)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime


def _utc(nullable: bool = False, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable, index=index)


class Participant(SQLModel, table=True):
    """An allocated participant. The module is not stored: only whether diary prompts run."""

    __tablename__ = "participant"

    record: str = Field(primary_key=True)
    allocation_number: str
    allocated_at: datetime = Field(sa_column=_utc())
    diary: bool = False
    diary_first_day: date | None = None
    diary_horizon: int = 0  # diary days whose prompts exist
    withdrawn_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    created_at: datetime = Field(sa_column=_utc())


class ContactRow(SQLModel, table=True):
    """Contact details, AES-GCM sealed (see crypto.py); may arrive before allocation."""

    __tablename__ = "contact"

    record: str = Field(primary_key=True)
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    key_id: str
    updated_at: datetime = Field(sa_column=_utc())


class FormStatus(SQLModel, table=True):
    """`<form>_complete` of a record's form in a REDCap event (0, 1 or 2)."""

    __tablename__ = "form_status"

    record: str = Field(primary_key=True)
    event: str = Field(primary_key=True)  # protocol event name, without the arm suffix
    form: str = Field(primary_key=True)
    complete: int
    updated_at: datetime = Field(sa_column=_utc())


class TimepointRow(SQLModel, table=True):
    __tablename__ = "timepoint"
    __table_args__ = (UniqueConstraint("record", "timepoint", name="uq_timepoint_record"),)

    id: int | None = Field(default=None, primary_key=True)
    record: str = Field(index=True)
    timepoint: str
    redcap_event: str
    due_on: date
    last_day: date
    opens_at: datetime = Field(sa_column=_utc())
    due_at: datetime = Field(sa_column=_utc())
    closes_at: datetime = Field(sa_column=_utc())
    completed_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class Message(SQLModel, table=True):
    """One outgoing message (reminder, diary prompt or safety notice) and its delivery state.

    `key` is deterministic (see domain.reminder_key / prompt_key) and claimed here before
    any side effect. The database caps reminders: unique (record, timepoint, attempt) and
    a CHECK on attempt (see the migration).
    """

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("record", "timepoint", "attempt", name="uq_message_reminder_attempt"),
        Index("ix_message_due", "state", "not_before"),  # the dispatcher's due query
    )

    key: str = Field(primary_key=True)
    kind: str  # reminder | diary_prompt | safety_notice
    record: str = Field(index=True)
    timepoint: str | None = None
    attempt: int | None = None
    channel: str
    recipient: str | None = None  # safety notices: the contact role
    ref: str | None = None        # safety: obligation id; diary: "<day>.<index>"
    facts: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # safety
    due_at: datetime = Field(sa_column=_utc())
    not_before: datetime = Field(sa_column=_utc())
    expires_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    state: str = "scheduled"
    tries: int = 0
    claimed_by: str | None = None
    lease_until: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    answered_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))  # diary
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    provider_ref: str | None = Field(default=None, index=True)
    error: str | None = None
    cancel_reason: str | None = None
    created_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())


class StaffTask(SQLModel, table=True):
    """A phone call or letter a reminder turned into: open → claimed → done (or cancelled)."""

    __tablename__ = "staff_task"

    id: int | None = Field(default=None, primary_key=True)
    message_key: str = Field(unique=True, foreign_key="message.key")
    record: str = Field(index=True)
    timepoint: str
    channel: str  # phone | letter
    due_at: datetime = Field(sa_column=_utc())
    state: str = Field(default="open", index=True)
    claimed_by: str | None = None
    claimed_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    outcome: str | None = None
    note: str | None = None
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    created_at: datetime = Field(sa_column=_utc())


class ReminderCap(SQLModel, table=True):
    """The cap the migration wrote into the CHECK constraint; compared with the protocol
    at start-up so an amended protocol cannot silently disagree with the database."""

    __tablename__ = "reminder_cap"

    id: int = Field(default=1, primary_key=True)
    max_per_timepoint: int


class FollowUp(SQLModel, table=True):
    """A staff task that is not a reminder call or letter: something a person must check
    (an e-mail whose outcome is unknown, a baseline that cannot be scored, an emergency
    unblinding, a stratum running low, ...). Opened once per source (message or event)."""

    __tablename__ = "follow_up"

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(unique=True)  # message key or event id
    kind: str
    record: str | None = Field(default=None, index=True)
    message_key: str | None = None
    summary: str
    state: str = Field(default="open", index=True)  # open | done
    resolution: str | None = None
    note: str | None = None
    resolved_by: str | None = None
    created_at: datetime = Field(sa_column=_utc())
    resolved_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
