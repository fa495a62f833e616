"""Request and response models of the safety API.

Nothing here carries an arm except `UnblindedReport`, which only the DSMB route returns.
The AE create body is validated by the domain (`parse_adverse_event`), so that every
missing, malformed or contradictory field is named in one answer.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .domain import AdverseEvent, BlindedReport, Case, UnblindedReport, sent_late
from .models import SafetyCandidate, SafetyCase, SafetyCaseVersion, SafetyObligation
from .repository import to_obligation

__all__ = [
    "AcknowledgeIn", "Assessment", "BlindedReport", "CandidateRead", "CaseRead", "CaseSummary",
    "CaseVersionRead", "FollowUpCreate", "ObligationRead", "SentIn", "TriageIn",
    "UnblindedReport",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FollowUpCreate(_In):
    reason: str = Field(max_length=2000, description="why this version exists (required)")
    received_at: AwareDatetime | None = Field(
        default=None, description="when the site learned the new information; default now")
    changes: dict[str, Any] = Field(
        min_length=1, description="AE fields that change; nested objects merge key by key")


class AcknowledgeIn(_In):
    note: str | None = Field(default=None, max_length=2000)


class SentIn(_In):
    sent_at: AwareDatetime | None = Field(default=None, description="default now")
    note: str | None = Field(default=None, max_length=2000,
                             description="e.g. the recipient's reference number")


class TriageIn(_In):
    decision: Literal["adverse_event", "not_adverse_event"]
    note: str | None = Field(default=None, max_length=2000)
    case_id: str | None = Field(default=None, description="the case that documents the AE")


class ObligationRead(BaseModel):
    id: str
    key: str
    case_id: str
    record: str
    rule_key: str
    recipients: list[str]
    version: int
    follow_up: bool
    status: str
    started_at: datetime
    deadline_at: datetime
    escalate_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    sent_at: datetime | None
    sent_by: str | None
    sent_late: bool
    escalated_at: datetime | None
    overdue_at: datetime | None

    @classmethod
    def of(cls, row: SafetyObligation, status: str) -> ObligationRead:
        return cls(id=row.id, key=row.key, case_id=row.case_id, record=row.record,
                   rule_key=row.rule_key, recipients=json.loads(row.recipients),
                   version=row.version, follow_up=row.follow_up, status=status,
                   started_at=row.started_at, deadline_at=row.deadline_at,
                   escalate_at=row.escalate_at, acknowledged_at=row.acknowledged_at,
                   acknowledged_by=row.acknowledged_by, sent_at=row.sent_at, sent_by=row.sent_by,
                   sent_late=sent_late(to_obligation(row)), escalated_at=row.escalated_at,
                   overdue_at=row.overdue_at)


class CaseVersionRead(BaseModel):
    number: int
    reason: str
    received_at: datetime
    recorded_by: str
    recorded_role: str
    recorded_at: datetime
    event_sha256: str
    event: AdverseEvent

    @classmethod
    def of(cls, row: SafetyCaseVersion) -> CaseVersionRead:
        return cls(number=row.number, reason=row.reason, received_at=row.received_at,
                   recorded_by=row.recorded_by, recorded_role=row.recorded_role,
                   recorded_at=row.recorded_at, event_sha256=row.event_sha256,
                   event=AdverseEvent.model_validate_json(row.event))


class Assessment(BaseModel):
    serious: bool
    related: bool
    unexpected: bool
    susar: bool


class CaseSummary(BaseModel):
    case_id: str
    record: str
    source: str
    current_version: int
    verbatim_term: str
    onset_date: date
    awareness_time: datetime
    severity: str
    serious: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: SafetyCase, case: Case) -> CaseSummary:
        e = case.latest.event
        return cls(case_id=row.case_id, record=row.record, source=row.source,
                   current_version=row.current_version, verbatim_term=e.verbatim_term,
                   onset_date=e.onset_date, awareness_time=e.awareness_time,
                   severity=e.severity.value, serious=e.seriousness.serious,
                   created_at=row.created_at, updated_at=row.updated_at)


class CaseRead(CaseSummary):
    assessment: Assessment
    latest: AdverseEvent
    versions: list[CaseVersionRead]
    obligations: list[ObligationRead]


class CandidateEffectRead(BaseModel):
    item: int
    impact: int


class CandidateRead(BaseModel):
    id: str
    record: str
    instrument: str
    source: str
    effects: list[CandidateEffectRead]
    status: str
    created_at: datetime
    updated_at: datetime
    triaged_by: str | None
    triaged_at: datetime | None
    triage_note: str | None
    case_id: str | None

    @classmethod
    def of(cls, row: SafetyCandidate) -> CandidateRead:
        return cls(id=row.id, record=row.record, instrument=row.instrument, source=row.source,
                   effects=json.loads(row.effects), status=row.status, created_at=row.created_at,
                   updated_at=row.updated_at, triaged_by=row.triaged_by,
                   triaged_at=row.triaged_at, triage_note=row.triage_note, case_id=row.case_id)


CandidateStatus = Literal["open", "adverse_event", "not_adverse_event"]
ObligationStatusFilter = Literal["open", "acknowledged", "sent", "overdue"]
