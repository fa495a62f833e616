"""The read model: facts the reports service keeps from the bus (created by
migrations/versions/0002_reports_tables.py). Counts and states only — no contact details,
no clinical answers beyond the NEQ counts, never an arm or a cluster. Everything here can
be thrown away and rebuilt from the stream (`tailor reports rebuild`)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime


def _at(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable)


class ParticipantRow(SQLModel, table=True):
    __tablename__ = "reports_participant"

    record: str = Field(primary_key=True)
    first_seen: date
    screened_on: date | None = None
    site: str | None = None
    eligible: bool | None = None
    consent: bool | None = None
    consented_on: date | None = None
    randomized_at: datetime | None = Field(default=None, sa_column=_at(nullable=True))
    module: str | None = None
    withdrawn_on: date | None = None
    withdrawal_event: str | None = None  # the event whose withdrawal form says so
    withdrawal_reason: str | None = None
    preventable: bool | None = None
    received_on: date | None = None  # started the allocated module (withdrawal form)
    received_event: str | None = None  # the event whose form says so


class FormRow(SQLModel, table=True):
    """The latest save of one form instance: a stale redelivery never overwrites a newer one."""

    __tablename__ = "reports_form"

    record: str = Field(primary_key=True)
    event: str = Field(primary_key=True)
    instrument: str = Field(primary_key=True)
    instance: int = Field(primary_key=True)
    complete_status: int
    saved_at: datetime = Field(sa_column=_at())


class TimepointRow(SQLModel, table=True):
    __tablename__ = "reports_timepoint"

    record: str = Field(primary_key=True)
    timepoint: str = Field(primary_key=True)
    completed_at: datetime = Field(sa_column=_at())
    reminders_sent: int


class NeqRow(SQLModel, table=True):
    __tablename__ = "reports_neq"

    record: str = Field(primary_key=True)
    timepoint: str = Field(primary_key=True)
    effects: int
    attributed_to_treatment: int


class AdverseEventRow(SQLModel, table=True):
    __tablename__ = "reports_adverse_event"

    record: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    serious: bool
    reported_on: date


class DiaryWeekRow(SQLModel, table=True):
    """A diary participant's prompts of one ISO week: the sum of the changes notifications
    published (`DiaryPromptsCounted`)."""

    __tablename__ = "reports_diary_week"

    record: str = Field(primary_key=True)
    week: str = Field(primary_key=True)  # ISO 8601 week, "YYYY-Www"
    week_start: date  # its Monday
    prompts_sent: int
    answered_in_time: int


READ_MODEL = (ParticipantRow, FormRow, TimepointRow, NeqRow, AdverseEventRow, DiaryWeekRow)
