"""Gateway use cases. Take a session and keyword arguments; never commit."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session

from services.core import audit
from services.core.events import AuditHead

from . import repository
from .models import WitnessedHead


def witness_audit_head(session: Session, *, head: AuditHead) -> bool:
    """Keep the newest head of each service's chain. A head that is shorter than one
    already witnessed means the chain was truncated or rebuilt: it is audited, not kept."""
    known = repository.witnessed_head(session, head.service)
    if known is not None and head.length <= known.length:
        if head.length < known.length:
            audit.append(session, actor="gateway", role="system", action="audit.head_regressed",
                         entity_type="audit_chain", entity_id=head.service,
                         before={"length": known.length, "head_hash": known.head_hash},
                         after={"length": head.length, "head_hash": head.head_hash})
        return False
    before = None if known is None else {"length": known.length, "head_hash": known.head_hash}
    row = known or WitnessedHead(service=head.service, length=0, head_hash="",
                                 announced_at=head.at, received_at=head.at)
    row.length, row.head_hash, row.announced_at = head.length, head.head_hash, head.at
    row.received_at = datetime.now(UTC)
    session.add(row)
    audit.append(session, actor="gateway", role="system", action="audit.head_witnessed",
                 entity_type="audit_chain", entity_id=head.service, before=before,
                 after={"length": head.length, "head_hash": head.head_hash})
    return True
