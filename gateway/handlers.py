"""Bus consumers of the gateway: parse the event, call the use case."""

from __future__ import annotations

from sqlmodel import Session

from services.core.consumers import Consumer
from services.core.events import AuditHead, Envelope

from . import service


def on_audit_head(session: Session, env: Envelope) -> None:
    head = env.payload(AuditHead)
    if head.service != "gateway":  # the gateway's own chain is verified locally
        service.witness_audit_head(session, head=head)


CONSUMERS = [
    Consumer("gateway-audit-heads", ("trial.v1.*.audit_head",), on_audit_head),
]
