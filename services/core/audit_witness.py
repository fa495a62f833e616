"""Audit heads: announced after every committed append batch, and witnessed by another party.

- `watch_appends(engine, wake)`: `wake()` runs after each commit that appended audit
  entries, so the beacon announces the new head at once (not on a timer); entries deleted
  before the next beacon therefore have at most one commit's window.
- The gateway witnesses every service's chain (gateway/audit_witness.py). The gateway's own
  chain is witnessed by every other service: each records the gateway's heads in its own
  chain (`audit.head_witnessed`), forward only, and only heads signed with the gateway's
  internal-token key (which only the gateway holds; services verify with its public key).
  Recording goes one way only — the gateway keeps the heads it witnesses in a table, not
  in its chain — so beacons do not ping-pong.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from datetime import datetime

import structlog
from pydantic import BaseModel
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from . import audit
from .audit import AuditEntry
from .bus_contract import GATEWAY_AUDIT_HEADS, Subscription
from .errors import PermanentError
from .events import AuditHead, Envelope

APPENDED = "audit_appended"
WITNESSED = "audit.head_witnessed"
log = structlog.get_logger(__name__)
_watchers: weakref.WeakKeyDictionary[Engine, Callable[[], None]] = weakref.WeakKeyDictionary()


def watch_appends(engine: Engine, wake: Callable[[], None]) -> None:
    """`wake` must be safe to call from any thread (it runs where the commit ran)."""
    _watchers[engine] = wake


@event.listens_for(OrmSession, "after_commit")
def _after_commit(session: OrmSession) -> None:
    if session.info.pop(APPENDED, False):
        bind = session.get_bind()  # a connection for a message of a consumed batch
        engine = getattr(bind, "engine", None)
        wake = _watchers.get(engine) if isinstance(engine, Engine) else None
        if wake is not None:
            wake()


@event.listens_for(OrmSession, "after_rollback")
def _after_rollback(session: OrmSession) -> None:
    session.info.pop(APPENDED, None)


class WitnessedHeadRead(BaseModel):
    service: str
    length: int
    head_hash: str
    announced_at: datetime
    witnessed_seq: int  # where in this chain the head was recorded


def gateway_heads(service: str) -> Subscription:
    return Subscription(f"{service}-gateway-audit-heads", (GATEWAY_AUDIT_HEADS,))


def witnessed(session: Session, chain: str) -> WitnessedHeadRead | None:
    """The newest head of `chain` recorded in this database's own chain."""
    row = session.exec(select(AuditEntry).where(AuditEntry.action == WITNESSED)
                       .where(AuditEntry.entity_id == chain)
                       .order_by(col(AuditEntry.seq).desc()).limit(1)).first()
    if row is None or row.after is None:
        return None
    after = json.loads(row.after)
    return WitnessedHeadRead(service=chain, length=after["length"], head_hash=after["head_hash"],
                             announced_at=after["announced_at"], witnessed_seq=row.seq or 0)


def witness_gateway_head(session: Session, env: Envelope, *, service: str,
                         verify: Callable[[bytes, str | None], bool]) -> bool:
    """Record the gateway's announced head in this chain if it moves forward and carries
    the gateway's signature (`verify`: the internal-token public key); anyone else who can
    publish on the subject (a provisioner, a forged producer) moves nothing."""
    head = env.payload(AuditHead)
    if head.service != "gateway":
        raise PermanentError(f"an audit head of {head.service!r} on the gateway's subject")
    if not verify(head.head_message(), head.signature):
        log.error("audit.gateway_head_refused", length=head.length,
                  reason="not signed with the gateway's key")
        return False
    known = witnessed(session, "gateway")
    if known is not None and head.length <= known.length:
        return False
    audit.append(session, actor=f"service:{service}", role="system", action=WITNESSED,
                 entity_type="audit_chain", entity_id="gateway",
                 before=None if known is None else {"length": known.length,
                                                     "head_hash": known.head_hash},
                 after={"length": head.length, "head_hash": head.head_hash,
                        "announced_at": head.at})
    return True
