"""Operations: every process's readiness and the dead-letter stream, for the ops role.

Ops read no participant data: a dead letter is shown by where and why it died, never by
its payload. Prometheus metrics are the kernel's `/metrics` on the gateway (ops only,
through the guard); each service's own `/metrics` is reachable only inside the cluster
(scraped there; the gateway never forwards it)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from nats.js import JetStreamContext
from sqlalchemy.engine import Engine

from services.core import audit, dead_letters
from services.core.bus_contract import owner_of
from services.core.db import ping, unit_of_work
from services.core.errors import DomainError
from services.core.roles import SERVICES
from services.core.settings import SERVICES as PROCESSES

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


def _js(request: Request) -> JetStreamContext:
    kernel = runtime_of(request).kernel
    js = kernel.bus.js if kernel is not None else None
    if js is None or kernel is None or not kernel.bus.connected:
        raise BusUnavailable("the gateway is not connected to NATS; retry shortly")
    return js


def _read(letter: dead_letters.DeadLetter) -> DeadLetterRead:
    return DeadLetterRead.model_validate(letter, from_attributes=True)


@router.get("/dead-letters", response_model=list[DeadLetterRead],
            summary="The newest dead letters: consumer, reason, error, original subject (no payload)")
async def list_dead_letters(request: Request, caller: GatewayCallerDep,
                            limit: Annotated[int, Query(gt=0, le=500)] = 50) -> list[DeadLetterRead]:
    del caller  # authorization only
    js = _js(request)
    try:
        found = await dead_letters.newest(js, limit)
    except Exception:
        raise BusUnavailable("the dead-letter stream cannot be read right now") from None
    return [_read(letter) for letter in found]


@router.post("/dead-letters/{seq}/replay", response_model=DeadLetterRead,
             summary="Publish a dead letter again on its original subject (audited)")
async def replay_dead_letter(seq: Annotated[int, Path(ge=1, le=2**63 - 1)], request: Request,
                             caller: GatewayCallerDep) -> DeadLetterRead:
    letter = await dead_letters.replay(  # the gateway's user may publish only its own facts
        _js(request), seq, may_publish=lambda subject: owner_of(subject, PROCESSES) == "gateway")
    engine = runtime_of(request).engine
    await asyncio.to_thread(audit_replay, engine, letter, caller.subject, caller.role.value)
    return _read(letter)


def audit_replay(engine: Engine, letter: dead_letters.DeadLetter, actor: str, role: str) -> None:
    with unit_of_work(engine) as session:
        audit.append(session, actor=actor, role=role, action="dead_letter.replayed",
                     entity_type="dead_letter", entity_id=str(letter.seq),
                     after={"consumer": letter.consumer, "subject": letter.original_subject,
                            "reason": letter.reason})
