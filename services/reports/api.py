"""The reports routes: parse, authorize (CallerDep + the permission table), compute, return
JSON, CSV or SVG. Blinded callers get pooled figures; unblinded callers (study manager,
DSMB) also get them per arm — the arms are asked from randomization at request time with the
caller's own token, and the read is audited."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.core.auth import CallerDep, view_of
from services.core.errors import InvalidInput
from services.core.http import SessionDep, deps_dependency
from services.core.internal_token import HEADER, Caller
from services.core.roles import View

from . import render, service
from .bootstrap import ReportsDeps
from .domain import Acceptability, ArmOf, CriterionResult, Flow, Recruitment, Retention
from .randomization_client import fetch_arm_map
from .schemas import FlowFormat, TableFormat

if TYPE_CHECKING:
    from services.core.runner import Kernel

router = APIRouter(prefix="/v1", tags=["reports"])
AS_OF = Query(description="the report's date (YYYY-MM-DD, UTC); default today")


_deps = deps_dependency(ReportsDeps)


def _kernel(request: Request) -> Kernel:
    return _deps(request).kernel


def _as_of(request: Request, as_of: Annotated[date | None, AS_OF] = None) -> date:
    today = _deps(request).now().date()
    if as_of is None:
        return today
    if as_of > today:
        raise InvalidInput(f"as_of {as_of} is in the future (today is {today})", field="as_of")
    return as_of


AsOfDep = Annotated[date, Depends(_as_of)]


def _actor(caller: Caller) -> service.Actor:
    return service.Actor(caller.subject, caller.role.value, caller.request_id)


def _arm_map(request: Request, caller: Caller) -> ArmOf | None:
    """The arm map for an unblinded caller (asked before any database work), else None."""
    if view_of(caller) is not View.UNBLINDED:
        return None
    config = _deps(request).config
    return fetch_arm_map(config.randomization_url, token=request.headers.get(HEADER),
                         timeout=config.randomization_timeout_seconds,
                         request_id=request.headers.get("x-request-id"))


_EXTENSION = {"text/csv": "csv", "image/svg+xml": "svg"}


def _file(text: str, media: str, name: str, as_of: date) -> Response:
    filename = f"{name}-{as_of.isoformat()}.{_EXTENSION[media]}"
    return Response(text, media_type=media,
                    headers={"Content-Disposition": f'inline; filename="{filename}"'})


@router.get("/flow", response_model=Flow, summary="CONSORT flow (pooled; per arm for unblinded roles)",
            responses={200: {"content": {"text/csv": {}, "image/svg+xml": {}}}})
def get_flow(request: Request, caller: CallerDep, session: SessionDep, as_of: AsOfDep,
             format: FlowFormat = FlowFormat.JSON) -> Any:
    arm_of = _arm_map(request, caller)
    protocol = _kernel(request).protocol
    flow = service.flow(session, protocol=protocol, as_of=as_of, arm_of=arm_of,
                        actor=_actor(caller))
    if format is FlowFormat.CSV:
        return _file(render.flow_csv(flow), "text/csv", "consort-flow", as_of)
    if format is FlowFormat.SVG:
        return _file(render.consort_svg(flow, title=protocol.trial.title), "image/svg+xml",
                     "consort-flow", as_of)
    return flow


@router.get("/feasibility", response_model=list[CriterionResult],
            summary="Feasibility criteria: value, Wilson 95% CI, verdict")
def get_feasibility(request: Request, caller: CallerDep, session: SessionDep, as_of: AsOfDep,
                    format: TableFormat = TableFormat.JSON) -> Any:
    results = service.feasibility_of(session, protocol=_kernel(request).protocol, as_of=as_of)
    if format is TableFormat.CSV:
        return _file(render.feasibility_csv(results), "text/csv", "feasibility", as_of)
    return results


@router.get("/recruitment", response_model=Recruitment,
            summary="Randomized per week and site, cumulative, projected completion")
def get_recruitment(request: Request, caller: CallerDep, session: SessionDep, as_of: AsOfDep,
                    format: TableFormat = TableFormat.JSON) -> Any:
    result = service.recruitment_of(session, protocol=_kernel(request).protocol, as_of=as_of)
    if format is TableFormat.CSV:
        return _file(render.recruitment_csv(result), "text/csv", "recruitment", as_of)
    return result


@router.get("/retention", response_model=Retention,
            summary="Per timepoint: due, complete, overdue, lost; reasons for loss")
def get_retention(request: Request, caller: CallerDep, session: SessionDep, as_of: AsOfDep,
                  format: TableFormat = TableFormat.JSON) -> Any:
    result = service.retention_of(session, protocol=_kernel(request).protocol, as_of=as_of)
    if format is TableFormat.CSV:
        return _file(render.retention_csv(result), "text/csv", "retention", as_of)
    return result


@router.get("/acceptability", response_model=Acceptability,
            summary="NEQ negative effects, AE/SAE counts (per arm for unblinded roles)")
def get_acceptability(request: Request, caller: CallerDep, session: SessionDep, as_of: AsOfDep,
                      format: TableFormat = TableFormat.JSON) -> Any:
    arm_of = _arm_map(request, caller)
    result = service.acceptability_of(session, protocol=_kernel(request).protocol, as_of=as_of,
                                      arm_of=arm_of, actor=_actor(caller))
    if format is TableFormat.CSV:
        return _file(render.acceptability_csv(result), "text/csv", "acceptability", as_of)
    return result

