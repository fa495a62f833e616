"""Operations: every process's readiness and the dead-letter stream, for the ops role.

Ops read no participant data: a dead letter is shown by where and why it died, never by
its payload. Prometheus metrics are the kernel's `/metrics` on the gateway (ops only,
through the guard); each service's own `/metrics` is reachable only inside the cluster
(scraped there; the gateway never forwards it)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from nats.js.errors import NotFoundError

from services.core.bus import DLQ_STREAM
from services.core.db import ping
from services.core.errors import DomainError
from services.core.roles import SERVICES

from .proxy import ServiceUnavailable
from .schemas import DeadLetterRead, OpsHealth, ServiceHealth
from .security import GatewayCallerDep, GatewayRuntime, runtime_of

router = APIRouter(prefix="/api/v1/ops", tags=["operations"])


class BusUnavailable(DomainError):
    status = 503
    title = "Bus unavailable"


async def _gateway_health(runtime: GatewayRuntime) -> ServiceHealth:
    checks: dict[str, str] = {}
    try:
        await asyncio.to_thread(ping, runtime.engine)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    kernel = runtime.kernel
    checks["nats"] = "ok" if kernel is not None and kernel.bus.connected else "unreachable"
    return ServiceHealth(service="gateway", ready=all(v == "ok" for v in checks.values()),
                         checks=checks)


async def _service_health(runtime: GatewayRuntime, service: str) -> ServiceHealth:
    try:
        response = await runtime.proxy.send(service, "GET", "/readyz")
        body = response.json()
        checks = {str(k): str(v) for k, v in dict(body.get("checks", {})).items()}
    except ServiceUnavailable as exc:
        return ServiceHealth(service=service, ready=False, checks={"http": exc.reason})
    except (ValueError, TypeError, AttributeError):
        return ServiceHealth(service=service, ready=False, checks={"http": "unreadable answer"})
    return ServiceHealth(service=service, ready=response.status_code == 200, checks=checks)


@router.get("/health", response_model=OpsHealth, summary="Readiness of the gateway and every service")
async def health(request: Request, caller: GatewayCallerDep) -> OpsHealth:
    del caller  # authorization only
    runtime = runtime_of(request)
    services = await asyncio.gather(_gateway_health(runtime),
                                    *(_service_health(runtime, s) for s in SERVICES))
    return OpsHealth(ready=all(s.ready for s in services), services=list(services))


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


@router.get("/dead-letters", response_model=list[DeadLetterRead],
            summary="The newest dead letters: consumer, reason, original subject (no payload)")
async def dead_letters(request: Request, caller: GatewayCallerDep,
                       limit: Annotated[int, Query(gt=0, le=500)] = 50) -> list[DeadLetterRead]:
    del caller  # authorization only
    kernel = runtime_of(request).kernel
    js = kernel.bus.js if kernel is not None else None
    if js is None or not kernel.bus.connected:  # type: ignore[union-attr]
        raise BusUnavailable("the gateway is not connected to NATS; retry shortly")
    try:
        state = (await js.stream_info(DLQ_STREAM)).state
    except Exception:
        raise BusUnavailable("the dead-letter stream cannot be read right now") from None
    found: list[DeadLetterRead] = []
    seq = state.last_seq
    while seq >= max(state.first_seq, 1) and len(found) < limit:
        try:
            msg = await js.get_msg(DLQ_STREAM, seq)
        except NotFoundError:  # removed from the stream (limits): skip the gap
            seq -= 1
            continue
        headers = msg.headers or {}
        found.append(DeadLetterRead(
            seq=seq, consumer=(msg.subject or "").removeprefix("trial.dlq."),
            reason=headers.get("Tailor-Dead-Letter-Reason"),
            original_subject=headers.get("Tailor-Original-Subject"),
            stream_seq=_int(headers.get("Tailor-Stream-Seq")),
            deliveries=_int(headers.get("Tailor-Deliveries"))))
        seq -= 1
    return found
