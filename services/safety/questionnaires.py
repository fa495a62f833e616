"""Use cases of the negative-effects questionnaires (NEQ, INEP) and candidate AEs.

Every save of a questionnaire form is scored and the scores kept per instance (record,
REDCap event, repeat instance). An NEQ effect the participant attributes to the
treatment with impact at or above the protocol's threshold opens a *candidate* for a
clinician to triage; a questionnaire never opens an adverse-event case, let alone an SAE.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session

from services.core import audit
from services.core.errors import Conflict, InvalidInput, NotFound
from services.core.events import FormSaved
from services.core.protocol.safety import SafetyRules

from . import repository
from .domain import (
    CandidateAdverseEvent,
    inep_from_redcap,
    neq_from_redcap,
    score_inep,
    score_neq,
    screen_neq,
)
from .models import SafetyCandidate, SafetyQuestionnaireScore
from .service import Actor, new_id

Instrument = Literal["neq", "inep"]
Decision = Literal["adverse_event", "not_adverse_event"]
OPEN = "open"


def _scores(kind: Instrument, saved: FormSaved, rules: SafetyRules) -> tuple[int, dict[str, Any]]:
    form = rules.redcap_form
    if kind == "neq":
        neq = score_neq(neq_from_redcap(saved.fields, form=form, n_items=rules.neq_items),
                        n_items=rules.neq_items)
        return neq.answered, asdict(neq)
    inep = score_inep(inep_from_redcap(saved.fields, form=form, design=rules.inep), rules.inep)
    return inep.total.answered, asdict(inep)


def record_questionnaire_form(session: Session, *, saved: FormSaved, kind: Instrument,
                              rules: SafetyRules, now: datetime,
                              correlation_id: str | None) -> str | None:
    """Score and keep this questionnaire instance; the candidate id if one was opened or
    changed. Raises `InvalidQuestionnaire` naming the REDCap fields at fault."""
    answered, scores = _scores(kind, saved, rules)
    if answered == 0:
        return None  # an empty save: nothing to score
    event_name, instance = saved.event or "", saved.repeat_instance or 0
    row = repository.score_row(session, record=saved.record, instrument=kind,
                               redcap_event=event_name, repeat_instance=instance)
    stored = json.dumps(scores, sort_keys=True)
    if row is None or row.scores != stored:
        before = None if row is None else json.loads(row.scores)
        row = row or SafetyQuestionnaireScore(
            id=new_id(kind), record=saved.record, instrument=kind, redcap_event=event_name,
            repeat_instance=instance, answered=answered, scores=stored, scored_at=now)
        row.answered, row.scores, row.scored_at = answered, stored, now
        session.add(row)
        audit.append(session, actor="redcap", role="redcap", action="questionnaire.scored",
                     entity_type="questionnaire", entity_id=row.id, record=saved.record,
                     before=before, after={"instrument": kind, "redcap_event": event_name,
                                           "repeat_instance": instance, "scores": scores},
                     correlation_id=correlation_id)
    if kind != "neq":
        return None
    source = f"{saved.instrument}@{event_name or '-'}" + (f"#{instance}" if instance else "")
    candidate = screen_neq(
        neq_from_redcap(saved.fields, form=rules.redcap_form, n_items=rules.neq_items),
        participant=saved.record, source=source, n_items=rules.neq_items,
        candidate_impact=rules.neq_candidate_impact)
    if candidate is None:
        return None
    return _keep_candidate(session, candidate, instrument=kind, now=now,
                           correlation_id=correlation_id)


def _keep_candidate(session: Session, candidate: CandidateAdverseEvent, *, instrument: str,
                    now: datetime, correlation_id: str | None) -> str | None:
    """Open the candidate, or update its effects; a new effect reopens a triaged one."""
    effects = [{"item": e.item, "impact": e.impact} for e in candidate.effects]
    row = repository.candidate_by_key(session, candidate.key)
    if row is not None and json.loads(row.effects) == effects:
        return None
    if row is None:
        row = SafetyCandidate(id=new_id("cand"), key=candidate.key, record=candidate.participant,
                              instrument=instrument, source=candidate.source,
                              effects=json.dumps(effects), status=OPEN, created_at=now,
                              updated_at=now)
        action, before = "candidate.opened", None
    else:
        before = candidate_audit(row)
        new_items = {e["item"] for e in effects} - {e["item"] for e in json.loads(row.effects)}
        action = "candidate.reopened" if new_items and row.status != OPEN else "candidate.updated"
        if action == "candidate.reopened":
            row.status, row.triaged_by, row.triaged_at, row.triage_note = OPEN, None, None, None
            row.case_id = None
        row.effects, row.updated_at = json.dumps(effects), now
    session.add(row)
    audit.append(session, actor="redcap", role="redcap", action=action, entity_type="candidate",
                 entity_id=row.id, record=row.record, before=before, after=candidate_audit(row),
                 correlation_id=correlation_id)
    return row.id


def candidate_audit(row: SafetyCandidate) -> dict[str, Any]:
    return {"key": row.key, "source": row.source, "effects": json.loads(row.effects),
            "status": row.status, "triaged_by": row.triaged_by, "triaged_at": row.triaged_at,
            "triage_note": row.triage_note, "case_id": row.case_id}


def triage_candidate(session: Session, *, candidate_id: str, decision: Decision,
                     note: str | None, case_id: str | None, actor: Actor,
                     now: datetime) -> SafetyCandidate:
    """A clinician's decision. Confirming an adverse event names the case that documents it
    (reported through POST /v1/adverse-events), so the link is checked, not assumed."""
    row = repository.candidate_row(session, candidate_id)
    if row is None:
        raise NotFound(f"no candidate {candidate_id}", field="candidate_id")
    if row.status != OPEN:
        raise Conflict(f"candidate {candidate_id} was already triaged by {row.triaged_by} "
                       f"({row.status})", field="candidate_id")
    if decision == "adverse_event":
        if not case_id:
            raise InvalidInput("decision adverse_event needs the case_id of the reported event",
                               field="case_id")
        case = repository.case_row(session, case_id)
        if case is None:
            raise InvalidInput(f"no adverse-event case {case_id}", field="case_id")
        if case.record != row.record:
            raise InvalidInput(f"case {case_id} belongs to another participant", field="case_id")
    elif case_id:
        raise InvalidInput("case_id goes with decision adverse_event only", field="case_id")
    before = candidate_audit(row)
    row.status, row.triaged_by, row.triaged_at = decision, actor.subject, now
    row.triage_note, row.case_id, row.updated_at = note, case_id, now
    session.add(row)
    audit.append(session, actor=actor.subject, role=actor.role, action="candidate.triaged",
                 entity_type="candidate", entity_id=row.id, record=row.record, before=before,
                 after=candidate_audit(row), reason=note, correlation_id=actor.correlation_id)
    return row
