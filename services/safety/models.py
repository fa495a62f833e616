"""Tables the safety service owns (created by migrations/versions/0002_safety_tables.py).

Case versions are append-only (the migration adds triggers, like the audit chain);
obligations, candidates and questionnaire scores change state, and every change is
audited. No table holds an arm or a cluster.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from services.core.db import UtcDateTime


def _at(nullable: bool = False, index: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable, index=index)


class SafetyCase(SQLModel, table=True):
    """One adverse event; its content lives in its versions."""

    __tablename__ = "safety_case"

    case_id: str = Field(primary_key=True)
    record: str = Field(index=True)
    source: str  # "api" or "redcap"
    current_version: int
    created_by: str
    created_at: datetime = Field(sa_column=_at())
    updated_at: datetime = Field(sa_column=_at())


class SafetyCaseVersion(SQLModel, table=True):
    """One version of a case, never changed once written."""

    __tablename__ = "safety_case_version"

    case_id: str = Field(primary_key=True, foreign_key="safety_case.case_id")
    number: int = Field(primary_key=True)
    event: str = Field(sa_column=Column(Text, nullable=False))  # AdverseEvent as JSON
    event_sha256: str
    reason: str
    received_at: datetime = Field(sa_column=_at())
    recorded_by: str
    recorded_role: str
    recorded_at: datetime = Field(sa_column=_at())


class SafetyRedcapInstance(SQLModel, table=True):
    """REDCap `adverse_event` instance → case: a redelivered or duplicated save finds its case.

    REDCap numbers repeat instances per event, so the event is part of the key.
    """

    __tablename__ = "safety_redcap_instance"

    record: str = Field(primary_key=True)
    redcap_event: str = Field(primary_key=True)  # "" in a non-longitudinal project
    repeat_instance: int = Field(primary_key=True)
    case_id: str = Field(unique=True, foreign_key="safety_case.case_id")


class SafetyObligation(SQLModel, table=True):
    __tablename__ = "safety_obligation"

    id: str = Field(primary_key=True)
    key: str = Field(unique=True)  # domain key "<case_id>/<rule_key>/v<version>"
    case_id: str = Field(index=True, foreign_key="safety_case.case_id")
    record: str = Field(index=True)
    rule_key: str
    recipients: str  # JSON list of contact roles
    version: int
    follow_up: bool
    status: str = Field(index=True)  # last status written: open/acknowledged/sent/overdue
    started_at: datetime = Field(sa_column=_at())
    deadline_at: datetime = Field(sa_column=_at())
    escalate_at: datetime = Field(sa_column=_at())
    acknowledged_at: datetime | None = Field(default=None, sa_column=_at(nullable=True))
    acknowledged_by: str | None = None
    sent_at: datetime | None = Field(default=None, sa_column=_at(nullable=True))
    sent_by: str | None = None
    escalated_at: datetime | None = Field(default=None, sa_column=_at(nullable=True))
    overdue_at: datetime | None = Field(default=None, sa_column=_at(nullable=True))
    created_at: datetime = Field(sa_column=_at())


class SafetyCandidate(SQLModel, table=True):
    """A questionnaire finding for a clinician to triage; never an adverse event by itself."""

    __tablename__ = "safety_candidate"

    id: str = Field(primary_key=True)
    key: str = Field(unique=True)  # domain key "<record>:<source>"
    record: str = Field(index=True)
    instrument: str
    source: str
    effects: str  # JSON list of {item, impact}
    status: str = Field(index=True)  # open / adverse_event / not_adverse_event
    created_at: datetime = Field(sa_column=_at())
    updated_at: datetime = Field(sa_column=_at())
    triaged_by: str | None = None
    triaged_at: datetime | None = Field(default=None, sa_column=_at(nullable=True))
    triage_note: str | None = None
    case_id: str | None = Field(default=None, foreign_key="safety_case.case_id")


class SafetyQuestionnaireScore(SQLModel, table=True):
    """NEQ or INEP scores of one questionnaire instance (the latest save)."""

    __tablename__ = "safety_questionnaire_score"
    __table_args__ = (UniqueConstraint("record", "instrument", "redcap_event", "repeat_instance",
                                       name="uq_safety_questionnaire_score_instance"),)

    id: str = Field(primary_key=True)
    record: str = Field(index=True)
    instrument: str  # "neq" or "inep" (the protocol's kind, not the REDCap form name)
    redcap_event: str  # "" in a non-longitudinal project
    repeat_instance: int  # 0 when the form does not repeat
    answered: int
    scores: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    scored_at: datetime = Field(sa_column=_at())


class SafetyParticipant(SQLModel, table=True):
    """What the blinded reports need about an allocated participant: module and time."""

    __tablename__ = "safety_participant"

    record: str = Field(primary_key=True)
    module: str
    allocation_number: str
    allocated_at: datetime = Field(sa_column=_at())
    updated_at: datetime = Field(sa_column=_at())
