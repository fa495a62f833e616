"""`POST /redcap/det`: REDCap's Data Entry Trigger.

The secret comes in the `X-Tailor-DET-Secret` header where something in front of Tailor can
add it (an ingress or proxy rewriting REDCap's request), else as `?secret=…`: REDCap itself
sends no custom headers. Either is compared in constant time and never logged by Tailor;
ingress access logs must drop the query string of this route (deploy/README.md). The
trigger is stored durably before the 200, because REDCap never retries; the data is then
re-fetched through the API by the trigger worker. Replays of a form's DET merge and, once a
fetch found nothing new, are fetched at most once per `det_coalesce_seconds` (see
`service.enqueue_trigger` for why they cannot be dropped outright).
"""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime, timedelta

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.auth.rate_limit import RateLimiter
from services.core.db import unit_of_work
from services.core.errors import DomainError, Forbidden
from services.core.http import kernel_of, problem

from . import service
from .deps import RedcapDeps
from .metrics import DET_RECEIVED
from .trigger import parse_trigger

log = structlog.get_logger(__name__)
router = APIRouter(tags=["redcap"])
SECRET_HEADER = "x-tailor-det-secret"  # noqa: S105 (a header name)


class Unavailable(DomainError):
    status = 503
    title = "REDCap integration not configured"


def redcap_of(request: Request) -> RedcapDeps:
    """The REDCap part of the gateway's dependencies (see gateway/bootstrap.py)."""
    redcap = getattr(request.app.state.deps, "redcap", None)
    if not isinstance(redcap, RedcapDeps):
        raise Unavailable("the REDCap integration is not part of this app")
    return redcap


def _sender(request: Request) -> str:
    # The guard's address (trusted proxies applied) when it ran, else the peer's.
    state = request.scope.get("state", {})
    return state.get("client_address") or (request.client.host if request.client else "unknown")


def _too_many(limiter: RateLimiter, key: str) -> JSONResponse | None:
    decision = limiter.check(key)
    if decision.allowed:
        return None
    response = problem(429, "Too many requests", "too many Data Entry Triggers; retry later")
    response.headers["Retry-After"] = decision.retry_after_header
    return response


@router.post("/redcap/det", summary="REDCap Data Entry Trigger (secret in a header or the URL)",
             response_description="The trigger is stored; REDCap needs nothing more")
async def data_entry_trigger(request: Request) -> JSONResponse:
    kernel, redcap = kernel_of(request), redcap_of(request)
    settings = redcap.settings
    expected = settings.trigger_secret()
    given = request.headers.get(SECRET_HEADER) or request.query_params.get("secret") or ""
    if expected is None:
        DET_RECEIVED.labels("unknown", "not_configured").inc()
        raise Unavailable("the DET secret is not configured (TAILOR_REDCAP_DET_SECRET)")
    limits = redcap.det_limits
    if not hmac.compare_digest(given.encode(), expected.encode()):
        DET_RECEIVED.labels("unknown", "forbidden").inc()
        limited = _too_many(limits.refused, f"det-refused:{_sender(request)}")
        if limited is not None:
            return limited
        log.warning("redcap.det_refused", reason="wrong or missing secret")  # never the secret
        raise Forbidden("wrong or missing secret", field="secret")
    limited = _too_many(limits.accepted, "det")
    if limited is not None:
        DET_RECEIVED.labels("unknown", "rate_limited").inc()
        return limited
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        trigger = parse_trigger(form, kernel.protocol)
    except DomainError as exc:
        DET_RECEIVED.labels("unknown", "malformed").inc()
        log.warning("redcap.det_refused", reason=exc.detail, field=exc.field)
        raise
    if trigger.project_id != kernel.protocol.redcap.project_id:
        DET_RECEIVED.labels(trigger.instrument, "unknown_project").inc()
        log.warning("redcap.det_refused", reason="project not configured",
                    project_id=trigger.project_id)
        raise Forbidden(f"project {trigger.project_id} is not configured", field="project_id")

    def store() -> tuple[str, bool]:
        with unit_of_work(kernel.engine) as session:
            # A replay, or a re-save before the form's pending trigger was done, merges.
            row, stored = service.enqueue_trigger(
                session, trigger=trigger, body=form, source="det", now=datetime.now(UTC),
                coalesce=timedelta(seconds=settings.det_coalesce_seconds))
            return row.id, stored

    trigger_id, stored = await asyncio.to_thread(store)
    redcap.trigger_wake.set()
    if not stored:
        DET_RECEIVED.labels(trigger.instrument, "already_pending").inc()
        return JSONResponse({"status": "already_pending", "trigger": trigger_id})
    DET_RECEIVED.labels(trigger.instrument, "stored").inc()
    return JSONResponse({"status": "stored", "trigger": trigger_id})
