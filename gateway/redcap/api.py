"""`POST /redcap/det`: REDCap's Data Entry Trigger.

The secret comes in the `X-Tailor-DET-Secret` header where something in front of Tailor can
add it (an ingress or proxy rewriting REDCap's request), else as `?secret=…`: REDCap itself
sends no custom headers. Either is compared in constant time and never logged by Tailor;
ingress access logs must drop the query string of this route (deploy/README.md). The
trigger is stored durably before the 200, because REDCap never retries; the data is then
re-fetched through the API by the trigger worker.
"""

from __future__ import annotations

import asyncio
import hmac
from datetime import UTC, datetime

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.core.db import unit_of_work
from services.core.errors import DomainError, Forbidden

from . import service
from .metrics import DET_RECEIVED
from .settings import RedcapSettings
from .trigger import parse_trigger

log = structlog.get_logger(__name__)
router = APIRouter(tags=["redcap"])
SECRET_HEADER = "x-tailor-det-secret"  # noqa: S105 (a header name)


class Unavailable(DomainError):
    status = 503
    title = "REDCap integration not configured"


@router.post("/redcap/det", summary="REDCap Data Entry Trigger (secret in a header or the URL)",
             response_description="The trigger is stored; REDCap needs nothing more")
async def data_entry_trigger(request: Request) -> JSONResponse:
    kernel = request.app.state.kernel
    settings: RedcapSettings = kernel.extras["redcap_settings"]
    expected = settings.trigger_secret()
    given = request.headers.get(SECRET_HEADER) or request.query_params.get("secret") or ""
    if expected is None:
        DET_RECEIVED.labels("unknown", "not_configured").inc()
        raise Unavailable("the DET secret is not configured (TAILOR_REDCAP_DET_SECRET)")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        DET_RECEIVED.labels("unknown", "forbidden").inc()
        log.warning("redcap.det_refused", reason="wrong or missing secret")  # never the secret
        raise Forbidden("wrong or missing secret", field="secret")
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

    def store() -> str:
        with unit_of_work(kernel.engine) as session:
            return service.store_trigger(session, trigger=trigger, body=form, source="det",
                                         now=datetime.now(UTC)).id

    trigger_id = await asyncio.to_thread(store)
    kernel.extras["redcap_trigger_wake"].set()
    DET_RECEIVED.labels(trigger.instrument, "stored").inc()
    return JSONResponse({"status": "stored", "trigger": trigger_id})
