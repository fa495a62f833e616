"""Participants: find one by record id; their timeline as this role may see it
(allocation, schedule with forms and reminders, messages' delivery states, open staff
tasks, adverse events). Contact details appear only in a coordinator's call scripts.

Opening a participant's page is itself recorded in the gateway's audit chain, like an
API read, besides the reads of each route the page calls."""

from __future__ import annotations

import asyncio
import re

import structlog
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.security.reads import Access, record_access
from gateway.security.runtime import runtime_of
from services.core.roles import BEARER_ROLES, Credential, RoutePermission

from .format import seg
from .web import PATH, PageRefused, VisitDep

router = APIRouter(prefix=f"{PATH}/participants", include_in_schema=False)
ALLOCATION = "/api/v1/randomization/v1/allocations/{record}"
SCHEDULE = "/api/v1/notifications/v1/schedules/{record}"
MESSAGES = "/api/v1/notifications/v1/messages"
TASKS = "/api/v1/notifications/v1/tasks"
ADVERSE_EVENTS = "/api/v1/safety/v1/adverse-events"
RECORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
PAGE_VIEW = RoutePermission("GET", f"{PATH}/participants/{{record}}", BEARER_ROLES,
                            credential=Credential.SESSION, participant_data=True,
                            note="a participant's page in the console")


def _record(value: str) -> str:
    value = value.strip()
    if not RECORD.match(value):
        raise PageRefused(400, "Not a record id",
                          "record: letters, digits and . _ : - only, at most 100 characters")
    return value


@router.get("", response_class=HTMLResponse)
async def search(visit: VisitDep, record: str | None = None) -> Response:
    page = visit.require("participants")
    if record:
        return RedirectResponse(f"{PATH}/participants/{seg(_record(record))}", status_code=303)
    return visit.render("participants.html", page, record=None)


@router.get("/{record}", response_class=HTMLResponse)
async def timeline(record: str, visit: VisitDep) -> Response:
    page = visit.require("participants")
    record = _record(record)
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    access = Access(visit.caller, PAGE_VIEW, "GET", visit.request.url.path, {"record": record},
                    record, request_id)
    await asyncio.to_thread(record_access, runtime_of(visit.request).engine, access, status=200)
    api, may = visit.api, visit.may
    allocation = await api.get(ALLOCATION.format(record=seg(record))) if may("GET", ALLOCATION) else None
    schedule = await api.get(SCHEDULE.format(record=seg(record))) if may("GET", SCHEDULE) else None
    messages = await api.get(MESSAGES, record=record) if may("GET", MESSAGES) else None
    events = await api.get(ADVERSE_EVENTS, record=record) if may("GET", ADVERSE_EVENTS) else None
    tasks = None
    if may("GET", TASKS):
        listed = await api.get(TASKS)
        tasks = [t for t in listed.body if t.get("record") == record] if listed.ok else None
    return visit.render("participant.html", page, record=record, allocation=allocation,
                        schedule=schedule, messages=messages, events=events, tasks=tasks)
