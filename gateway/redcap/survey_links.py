"""`GET /internal/redcap/survey-link` and `/internal/redcap/survey-queue-link`: a
participant's own REDCap survey links, for the reminders notifications sends.

Internal only: the caller shows the survey-link secret (services/core/survey_links.py),
which opens these two routes and nothing else; a wrong or missing secret is refused and
rate-limited per address like a wrong DET secret. The instrument and event must be a
survey of a protocol timepoint, or the diary's answer survey with the prompt's
`repeat_instance`, so the routes cannot be used to reach other forms. Each
answer is recorded in the gateway's audit trail as a read of that participant (the record,
instrument and event; never the link, whose hash lets anyone answer as the participant).
REDCap down or slow → 503 with Retry-After; REDCap refusing (e.g. an unknown record) → 422.
"""

from __future__ import annotations

import asyncio
import hmac
import unicodedata
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.core import audit
from services.core.db import unit_of_work
from services.core.errors import DomainError, Forbidden, InvalidInput
from services.core.protocol import TrialProtocol
from services.core.runner import Kernel
from services.core.secret_store import SecretMissing
from services.core.survey_links import (
    CALLER,
    HEADER,
    QUEUE_LINK_PATH,
    SURVEY_LINK_PATH,
    SurveyLink,
)

from .api import _sender, _too_many, redcap_of
from .client import RedcapClient, RedcapRefused, RedcapUnavailable

log = structlog.get_logger(__name__)
router = APIRouter(tags=["redcap"])


class RedcapDown(DomainError):
    status = 503
    title = "REDCap unavailable"


class RedcapRefusedLink(DomainError):
    status = 422
    title = "REDCap refused the survey link"


def _admit(request: Request) -> JSONResponse | None:
    redcap = redcap_of(request)
    given = (request.headers.get(HEADER) or "").encode()
    try:
        expected = redcap.survey_link_secret()
    except SecretMissing as exc:  # a deployment without it: not the caller's fault
        raise RedcapDown(f"survey links are not configured: {exc}", field=exc.source) from None
    if given and hmac.compare_digest(given, expected):
        return None
    limited = _too_many(redcap.det_limits.refused, f"survey-link-refused:{_sender(request)}")
    if limited is not None:
        return limited
    log.warning("redcap.survey_link_refused", reason="wrong or missing secret")
    raise Forbidden(f"wrong or missing {HEADER}", field=HEADER)


def _client(request: Request) -> RedcapClient:
    client = redcap_of(request).client
    if client is None:
        raise RedcapDown("the REDCap integration is not configured (TAILOR_REDCAP_API_URL)",
                         field="redcap")
    return client


def _record(request: Request) -> str:
    record = request.query_params.get("record", "")
    if not record:
        raise InvalidInput("record is required", field="record")
    if len(record) > 100:
        raise InvalidInput("record is longer than 100 characters", field="record")
    if any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in record):
        # The edge's guard refuses these too; the route does not rely on being behind it.
        raise InvalidInput("record: whitespace and control characters are not allowed",
                           field="record")
    return record


def survey_place(protocol: TrialProtocol, instrument: str, event: str,
                 repeat_instance: str = "") -> tuple[str, int | None]:
    """REDCap's unique event name (and repeat instance) for a survey of a protocol
    timepoint, or for one prompt's instance of the diary's answer survey; else a 422
    naming the parameter that is wrong."""
    if not instrument:
        raise InvalidInput("instrument is required", field="instrument")
    if not event:
        raise InvalidInput("event is required", field="event")
    redcap = protocol.redcap
    key = redcap.event_key(event)
    if key is not None and protocol.diary_answers == (instrument, key):
        return redcap.unique_event_name(key), _diary_instance(protocol, repeat_instance)
    timepoint = next((t for t in protocol.timepoints if t.redcap_event == key), None)
    if timepoint is None:
        raise InvalidInput(f"{event!r} is not the REDCap event of a protocol timepoint",
                               field="event")
    if instrument not in timepoint.surveys:
        raise InvalidInput(
            f"{instrument!r} is not a survey of timepoint {timepoint.key!r} "
            f"(surveys: {timepoint.surveys})", field="instrument")
    if repeat_instance:
        raise InvalidInput("repeat_instance: only the diary's answer survey repeats",
                           field="repeat_instance")
    return redcap.unique_event_name(timepoint.redcap_event), None


def _diary_instance(protocol: TrialProtocol, raw: str) -> int:
    """One instance per prompt: 1 … days × prompts_per_day."""
    last = protocol.diary_policy.prompts
    if not raw.isdigit() or not 1 <= int(raw) <= last:
        raise InvalidInput(f"repeat_instance: the diary's answer survey needs the prompt's "
                           f"instance, a number from 1 to {last}", field="repeat_instance")
    return int(raw)


async def _fetch(request: Request, call: str, *args: str | int) -> str:
    client = _client(request)
    try:
        return await asyncio.to_thread(getattr(client, call), *args)
    except RedcapUnavailable as exc:
        raise RedcapDown(f"{exc}; retry later", field="redcap") from None
    except RedcapRefused as exc:
        raise RedcapRefusedLink(str(exc), field="redcap") from None


def _record_read(kernel: Kernel, route: str, record: str, params: dict[str, str],
                 request_id: str | None) -> None:
    with unit_of_work(kernel.engine) as session:
        audit.append(session, actor=CALLER, role="service", action="participant_data.read",
                     entity_type="participant", entity_id=record, record=record,
                     after={"route": route, "method": "GET", "status": 200, "params": params},
                     correlation_id=request_id, at=datetime.now(UTC))


async def _answer(request: Request, route: str, record: str, params: dict[str, str],
                  link: str) -> JSONResponse:
    await asyncio.to_thread(_record_read, request.app.state.kernel, route, record, params,
                            request.headers.get("x-request-id"))
    return JSONResponse(SurveyLink(record=record, link=link).model_dump(),
                        headers={"Cache-Control": "no-store"})


@router.get(SURVEY_LINK_PATH, summary="A participant's own REDCap survey link (internal)")
async def survey_link(request: Request) -> JSONResponse:
    refused = _admit(request)
    if refused is not None:
        return refused
    record = _record(request)
    instrument = request.query_params.get("instrument", "").strip()
    event, instance = survey_place(request.app.state.kernel.protocol, instrument,
                                   request.query_params.get("event", "").strip(),
                                   request.query_params.get("repeat_instance", "").strip())
    link = await _fetch(request, "survey_link", record, instrument, event, instance or 1)
    params: dict[str, str] = {"instrument": instrument, "event": event}
    if instance is not None:
        params["repeat_instance"] = str(instance)
    return await _answer(request, SURVEY_LINK_PATH, record, params, link)


@router.get(QUEUE_LINK_PATH, summary="A participant's REDCap survey-queue link (internal)")
async def survey_queue_link(request: Request) -> JSONResponse:
    refused = _admit(request)
    if refused is not None:
        return refused
    record = _record(request)
    link = await _fetch(request, "survey_queue_link", record)
    return await _answer(request, QUEUE_LINK_PATH, record, {}, link)
