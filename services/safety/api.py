"""The safety service's routes: parse, authorize (CallerDep + the permission table),
call a use case, return a schema. Domain errors become problem documents naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.core.auth import CallerDep
from services.core.errors import Conflict
from services.core.errors import InvalidInput as InvalidRequest
from services.core.http import SessionDep, deps_dependency
from services.core.internal_token import HEADER, Caller
from services.core.protocol import TrialProtocol

from . import questionnaires, reporting, repository, service
from .bootstrap import SafetyDeps
from .domain import InvalidFollowUp, InvalidInput, ObligationStateError, SafetyError
from .randomization_client import fetch_unblinded_allocations
from .schemas import (
    AcknowledgeIn,
    Assessment,
    BlindedReport,
    CandidateRead,
    CandidateStatus,
    CaseRead,
    CaseSummary,
    CaseVersionRead,
    FollowUpCreate,
    ObligationRead,
    ObligationStatusFilter,
    SentIn,
    TriageIn,
    UnblindedReport,
)

router = APIRouter(prefix="/v1", tags=["safety"])


DepsDep = Annotated[SafetyDeps, Depends(deps_dependency(SafetyDeps))]


def _now(deps: DepsDep) -> datetime:
    return deps.now()


NowDep = Annotated[datetime, Depends(_now)]


def _actor(caller: Caller) -> service.Actor:
    return service.Actor(caller.subject, caller.role.value, caller.request_id)


@contextmanager
def domain_errors() -> Iterator[None]:
    """Safety domain errors → 422 (every field named) or 409; the transaction rolls back."""
    try:
        yield
    except InvalidInput as err:
        raise RequestValidationError([
            {"loc": ("body", *p.field.split(".")), "msg": p.message, "type": "value_error"}
            for p in err.problems]) from None
    except InvalidFollowUp as err:
        field = "changes" if err.field == "(event)" else err.field
        raise InvalidRequest(str(err.message), field=field) from None
    except ObligationStateError as err:
        raise Conflict(err.message, field=err.field) from None
    except SafetyError as err:
        raise InvalidRequest(err.message, field=err.field) from None
    except IntegrityError:  # another request wrote the same version or obligation first
        raise Conflict("the case changed while this request was processed; reload and retry",
                       field="case_id") from None


def _protocol(deps: DepsDep) -> TrialProtocol:
    return deps.kernel.protocol


ProtocolDep = Annotated[TrialProtocol, Depends(_protocol)]


def _case_read(session: Session, case_id: str, protocol: TrialProtocol, now: datetime) -> CaseRead:
    case = service.require_case(session, case_id)
    row = repository.case_row(session, case_id)
    assert row is not None
    return CaseRead(
        **CaseSummary.of(row, case).model_dump(),
        assessment=Assessment(**service.case_assessment(case, protocol.safety)), latest=case.latest.event,
        versions=[CaseVersionRead.of(v) for v in repository.version_rows(session, [case_id])],
        obligations=[ObligationRead.of(o, service.obligation_status(o, now).value)
                     for o in repository.obligation_rows(session, case_id=case_id)])


@router.post("/adverse-events", status_code=201, response_model=CaseRead,
             summary="Report an adverse event (every bad field is named in one 422)")
def report_adverse_event(caller: CallerDep, session: SessionDep, protocol: ProtocolDep,
                         now: NowDep, body: Annotated[dict[str, Any], Body()]) -> CaseRead:
    with domain_errors():
        case = service.report_adverse_event(session, data=body, actor=_actor(caller),
                                            rules=protocol.safety, now=now)
    return _case_read(session, case.case_id, protocol, now)


@router.get("/adverse-events", response_model=list[CaseSummary], summary="Adverse-event cases")
def list_adverse_events(caller: CallerDep, session: SessionDep, record: str | None = None
                        ) -> list[CaseSummary]:
    rows = repository.case_rows(session, record=record)
    cases = {c.case_id: c for c in repository.load_cases(session, [r.case_id for r in rows])}
    return [CaseSummary.of(r, cases[r.case_id]) for r in rows]


@router.get("/adverse-events/{case_id}", response_model=CaseRead,
            summary="One case with every version and its obligations")
def get_adverse_event(caller: CallerDep, session: SessionDep, protocol: ProtocolDep, now: NowDep,
                      case_id: str) -> CaseRead:
    return _case_read(session, case_id, protocol, now)


@router.get("/adverse-events/{case_id}/versions", response_model=list[CaseVersionRead],
            summary="Every version of a case, oldest first")
def case_versions(caller: CallerDep, session: SessionDep, case_id: str) -> list[CaseVersionRead]:
    service.require_case(session, case_id)
    return [CaseVersionRead.of(v) for v in repository.version_rows(session, [case_id])]


@router.post("/adverse-events/{case_id}/follow-ups", status_code=201, response_model=CaseRead,
             summary="A follow-up: a new version of the case, with a reason")
def add_follow_up(caller: CallerDep, session: SessionDep, protocol: ProtocolDep, now: NowDep,
                  case_id: str, body: FollowUpCreate) -> CaseRead:
    with domain_errors():
        service.follow_up_case(session, case_id=case_id, changes=body.changes, reason=body.reason,
                               received_at=body.received_at, actor=_actor(caller),
                               rules=protocol.safety, now=now)
    return _case_read(session, case_id, protocol, now)


@router.get("/adverse-events/{case_id}/e2b", summary="The case as ICH E2B(R3)-structured JSON")
def export_e2b(caller: CallerDep, session: SessionDep, protocol: ProtocolDep, now: NowDep,
               case_id: str) -> dict[str, Any]:
    return reporting.e2b(session, case_id=case_id, protocol=protocol, now=now)


@router.get("/obligations", response_model=list[ObligationRead],
            summary="Reporting obligations, soonest deadline first")
def list_obligations(caller: CallerDep, session: SessionDep, now: NowDep,
                     status: ObligationStatusFilter | None = None, case_id: str | None = None
                     ) -> list[ObligationRead]:
    rows = repository.obligation_rows(session, case_id=case_id)
    found = [ObligationRead.of(r, service.obligation_status(r, now).value) for r in rows]
    return [o for o in found if status is None or o.status == status]


@router.post("/obligations/{obligation_id}/acknowledge", response_model=ObligationRead,
             summary="Take charge of an obligation (stops escalation, not the clock)")
def acknowledge_obligation(caller: CallerDep, session: SessionDep, now: NowDep, obligation_id: str,
                           body: AcknowledgeIn | None = None) -> ObligationRead:
    with domain_errors():
        row = service.acknowledge_obligation(session, obligation_id=obligation_id,
                                             actor=_actor(caller), now=now,
                                             note=body.note if body else None)
    return ObligationRead.of(row, service.obligation_status(row, now).value)


@router.post("/obligations/{obligation_id}/sent", response_model=ObligationRead,
             summary="Record that the report reached its recipients (who and when)")
def obligation_sent(caller: CallerDep, session: SessionDep, now: NowDep, obligation_id: str,
                    body: SentIn | None = None) -> ObligationRead:
    with domain_errors():
        row = service.mark_obligation_sent(session, obligation_id=obligation_id,
                                           actor=_actor(caller), now=now,
                                           sent_at=body.sent_at if body else None,
                                           note=body.note if body else None)
    return ObligationRead.of(row, service.obligation_status(row, now).value)


@router.get("/candidates", response_model=list[CandidateRead],
            summary="Candidate AEs from the negative-effects questionnaires")
def list_candidates(caller: CallerDep, session: SessionDep, status: CandidateStatus | None = None,
                    record: str | None = None) -> list[CandidateRead]:
    return [CandidateRead.of(r)
            for r in repository.candidate_rows(session, status=status, record=record)]


@router.post("/candidates/{candidate_id}/triage", response_model=CandidateRead,
             summary="A clinician's decision on a candidate AE")
def triage_candidate(caller: CallerDep, session: SessionDep, now: NowDep, candidate_id: str,
                     body: TriageIn) -> CandidateRead:
    row = questionnaires.triage_candidate(session, candidate_id=candidate_id,
                                          decision=body.decision, note=body.note,
                                          case_id=body.case_id, actor=_actor(caller), now=now)
    return CandidateRead.of(row)


@router.get("/reports/blinded", response_model=BlindedReport,
            summary="AE/SAE counts and rates by module; obligations (no arm)")
def report_blinded(caller: CallerDep, session: SessionDep, protocol: ProtocolDep,
                   now: NowDep) -> BlindedReport:
    return reporting.blinded(session, protocol=protocol, now=now)


@router.get("/reports/unblinded", response_model=UnblindedReport,
            summary="DSMB only: the same by arm, with SAE listings (arms asked at report time)")
def report_unblinded(caller: CallerDep, session: SessionDep, protocol: ProtocolDep, now: NowDep,
                     request: Request, deps: DepsDep) -> UnblindedReport:
    config = deps.config
    # Asked before the session touches the database: no transaction waits on a peer.
    answer = fetch_unblinded_allocations(
        config.randomization_url, token=request.headers.get(HEADER),
        timeout=config.randomization_timeout_seconds,
        request_id=request.headers.get("x-request-id"))
    return reporting.unblinded(session, protocol=protocol, now=now, answer=answer,
                               actor=_actor(caller),
                               digest_key=deps.digest_key)


# The permission table's older name of the same DSMB report.
router.add_api_route("/reports/dsmb", report_unblinded, methods=["GET"],
                     response_model=UnblindedReport, include_in_schema=False)
