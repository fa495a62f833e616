"""Gateway use cases. Take a session and keyword arguments; never commit."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from sqlmodel import Session

from services.core.events import AuditHead

from . import repository
from .models import WitnessedHead

log = structlog.get_logger(__name__)


def moves_forward(session: Session, head: AuditHead) -> bool:
    """A head no longer than the one witnessed changes nothing. A shorter one is logged:
    `/audit/verify` then reports the chain against the head already witnessed."""
    known = repository.witnessed_head(session, head.service)
    if known is not None and head.length < known.length:
        log.warning("gateway.audit_head_behind", chain=head.service, announced=head.length,
                    witnessed=known.length)
    return known is None or head.length > known.length


def witness_audit_head(session: Session, *, head: AuditHead) -> bool:
    """Keep the newest checked head of each service's chain (forward only). Kept in a
    table rather than in the gateway's own chain: the services witness that chain, and
    an entry per head would make the two announce each other's heads without end."""
    if not moves_forward(session, head):
        return False
    known = repository.witnessed_head(session, head.service)
    row = known or WitnessedHead(service=head.service, length=0, head_hash="",
                                 announced_at=head.at, received_at=head.at)
    row.length, row.head_hash, row.announced_at = head.length, head.head_hash, head.at
    row.received_at = datetime.now(UTC)
    session.add(row)
    return True
