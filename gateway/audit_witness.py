"""The gateway as witness of every service's audit chain.

A beacon (`trial.v1.<service>.audit_head`) is only a claim. Before the gateway records
it, it reads the entry at that length from the service's own audit API: the head is kept
only if the service really holds an entry with that hash, and only if it moves the
witness forward. A head that cannot be checked (service unreachable) is retried; one the
chain does not hold is refused and counted, never recorded — so a forged head can neither
jam the witness nor make `/audit/verify` report a truncation that did not happen.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from services.core.errors import PermanentError, TransientError
from services.core.events import AuditHead
from services.core.internal_token import HEADER, Caller, route_of
from services.core.roles import Role

from .proxy import ServiceUnavailable

if TYPE_CHECKING:
    from .security import GatewayRuntime

log = structlog.get_logger(__name__)

HEADS_REFUSED = Counter("tailor_gateway_audit_heads_refused_total",
                        "Announced audit heads the service's chain does not hold", ["chain"])
WITNESS = Caller(subject="gateway:audit-witness", role=Role.MONITOR)
CHECK_SECONDS = 10.0


async def hash_at(runtime: GatewayRuntime, service: str, seq: int) -> str | None:
    """The stored hash of entry `seq` of the service's chain (None: it has no such entry)."""
    headers = {HEADER: runtime.sign(WITNESS, audience=service, request_id=None,
                                    routes={service: route_of("GET", "/v1/audit")})}
    response = await runtime.proxy.send(service, "GET", "/v1/audit", headers=headers,
                                        params={"after_seq": seq - 1, "limit": 1})
    if response.status_code != 200:
        raise ServiceUnavailable(service, f"answered {response.status_code} to /v1/audit")
    entries = response.json()
    if not entries or entries[0].get("seq") != seq:
        return None
    return str(entries[0].get("hash"))


async def check_head(runtime: GatewayRuntime | None, head: AuditHead) -> None:
    """Raise unless the service's chain holds `head` (before any database lock is taken)."""
    if runtime is None:
        raise TransientError("the gateway's edge is not running: cannot check the head yet")
    try:
        held = await asyncio.wait_for(hash_at(runtime, head.service, head.length), CHECK_SECONDS)
    except (ServiceUnavailable, TimeoutError) as exc:
        raise TransientError(f"cannot read the chain of {head.service}: {exc!r}") from None
    if held != head.head_hash:
        HEADS_REFUSED.labels(head.service).inc()
        log.error("gateway.audit_head_refused", chain=head.service, length=head.length,
                  held=held is not None)
        raise PermanentError(f"the chain of {head.service} holds no entry {head.length} "
                             "with the announced hash")
