"""Bus consumers of the gateway: parse the event, call the use case."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer
from services.core.errors import PermanentError
from services.core.events import AuditHead, Envelope

from . import audit_witness, service

if TYPE_CHECKING:
    from .bootstrap import GatewayDeps

AUDIT_HEADS = Subscription("gateway-audit-heads", ("trial.v1.*.audit_head",))


def _head(env: Envelope) -> AuditHead:
    head = env.payload(AuditHead)
    if head.service != env.producer:
        raise PermanentError(f"{env.producer} announced the head of {head.service}")
    return head


def consumers(deps: GatewayDeps) -> list[Consumer]:
    async def check(env: Envelope) -> None:
        head = _head(env)
        if head.service != "gateway":
            await audit_witness.check_head(deps.edge, head)

    def on_audit_head(session: Session, env: Envelope) -> None:
        head = _head(env)
        if head.service != "gateway":  # the gateway's own chain is witnessed by the services
            service.witness_audit_head(session, head=head)

    return [Consumer(AUDIT_HEADS.durable, AUDIT_HEADS.subjects, on_audit_head, check=check)]
