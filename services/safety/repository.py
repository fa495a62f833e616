"""Every query of the safety database, and the mapping between rows and domain objects."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlmodel import Session, col, select

from .domain import AdverseEvent, Case, CaseVersion, Obligation
from .models import (
    SafetyCandidate,
    SafetyCase,
    SafetyCaseVersion,
    SafetyObligation,
    SafetyParticipant,
    SafetyQuestionnaireScore,
    SafetyRedcapInstance,
)

# --- cases ------------------------------------------------------------------------------


def case_row(session: Session, case_id: str) -> SafetyCase | None:
    return session.get(SafetyCase, case_id)


def case_rows(session: Session, *, record: str | None = None) -> list[SafetyCase]:
    query = select(SafetyCase).order_by(col(SafetyCase.created_at), col(SafetyCase.case_id))
    if record is not None:
        query = query.where(SafetyCase.record == record)
    return list(session.exec(query))


def version_rows(session: Session, case_ids: Sequence[str] | None = None) -> list[SafetyCaseVersion]:
    query = select(SafetyCaseVersion).order_by(col(SafetyCaseVersion.case_id),
                                                col(SafetyCaseVersion.number))
    if case_ids is not None:
        query = query.where(col(SafetyCaseVersion.case_id).in_(list(case_ids)))
    return list(session.exec(query))


def to_case(case_id: str, versions: Sequence[SafetyCaseVersion]) -> Case:
    return Case(case_id=case_id, versions=tuple(
        CaseVersion(number=v.number, event=AdverseEvent.model_validate_json(v.event),
                    reason=v.reason, received_at=v.received_at, recorded_by=v.recorded_by)
        for v in sorted(versions, key=lambda v: v.number)))


def load_case(session: Session, case_id: str) -> Case | None:
    rows = version_rows(session, [case_id])
    return to_case(case_id, rows) if rows else None


def load_cases(session: Session, case_ids: Sequence[str] | None = None) -> list[Case]:
    grouped: dict[str, list[SafetyCaseVersion]] = {}
    for row in version_rows(session, case_ids):
        grouped.setdefault(row.case_id, []).append(row)
    return [to_case(case_id, rows) for case_id, rows in grouped.items()]


def redcap_instance(session: Session, record: str, redcap_event: str,
                    repeat_instance: int) -> SafetyRedcapInstance | None:
    return session.get(SafetyRedcapInstance, (record, redcap_event, repeat_instance))


# --- obligations ------------------------------------------------------------------------


def obligation_row(session: Session, obligation_id: str) -> SafetyObligation | None:
    return session.get(SafetyObligation, obligation_id)


def obligation_rows(session: Session, *, case_id: str | None = None,
                    unsent_only: bool = False) -> list[SafetyObligation]:
    query = select(SafetyObligation).order_by(col(SafetyObligation.deadline_at),
                                              col(SafetyObligation.key))
    if case_id is not None:
        query = query.where(SafetyObligation.case_id == case_id)
    if unsent_only:
        query = query.where(col(SafetyObligation.sent_at).is_(None))
    return list(session.exec(query))


def to_obligation(row: SafetyObligation) -> Obligation:
    return Obligation(
        key=row.key, case_id=row.case_id, participant=row.record, rule_key=row.rule_key,
        recipients=tuple(json.loads(row.recipients)), version=row.version,
        follow_up=row.follow_up, started_at=row.started_at, deadline_at=row.deadline_at,
        escalate_at=row.escalate_at, acknowledged_at=row.acknowledged_at,
        acknowledged_by=row.acknowledged_by, sent_at=row.sent_at, sent_by=row.sent_by,
        escalated_at=row.escalated_at)


# --- candidates and questionnaire scores ------------------------------------------------


def candidate_row(session: Session, candidate_id: str) -> SafetyCandidate | None:
    return session.get(SafetyCandidate, candidate_id)


def candidate_by_key(session: Session, key: str) -> SafetyCandidate | None:
    return session.exec(select(SafetyCandidate).where(SafetyCandidate.key == key)).first()


def candidate_rows(session: Session, *, status: str | None = None,
                   record: str | None = None) -> list[SafetyCandidate]:
    query = select(SafetyCandidate).order_by(col(SafetyCandidate.created_at),
                                             col(SafetyCandidate.id))
    if status is not None:
        query = query.where(SafetyCandidate.status == status)
    if record is not None:
        query = query.where(SafetyCandidate.record == record)
    return list(session.exec(query))


def score_row(session: Session, *, record: str, instrument: str, redcap_event: str,
              repeat_instance: int) -> SafetyQuestionnaireScore | None:
    return session.exec(select(SafetyQuestionnaireScore).where(
        SafetyQuestionnaireScore.record == record,
        SafetyQuestionnaireScore.instrument == instrument,
        SafetyQuestionnaireScore.redcap_event == redcap_event,
        SafetyQuestionnaireScore.repeat_instance == repeat_instance)).first()


# --- participants -----------------------------------------------------------------------


def participant(session: Session, record: str) -> SafetyParticipant | None:
    return session.get(SafetyParticipant, record)


def participants(session: Session) -> list[SafetyParticipant]:
    return list(session.exec(select(SafetyParticipant).order_by(col(SafetyParticipant.record))))
