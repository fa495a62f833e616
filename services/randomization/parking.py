"""Allocation requests that must wait are parked durably, never dead-lettered.

A participant whose baseline is complete before a list is sealed, or whose stratum ran
out of slots, (or whose list was sealed with a key this process does not hold) waits in
`parked_allocation`. Sealing or extending a list re-drives every parked request in the
same transaction, one savepoint each; the free-slot watcher re-drives them too, so a
request parked while a key was missing is allocated once the right key is loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime

import structlog
from sqlmodel import Session, col, select

from services.core import audit

from . import service
from .models import ParkedAllocation
from .service import Actor, AllocationRequest, Context

log = structlog.get_logger(__name__)

PARKED = "tailor.parked-allocation/1"
WAITING = (service.NoSealedList, service.StratumExhausted, service.ListKeyMismatch)


def park(session: Session, ctx: Context, req: AllocationRequest, why: Exception) -> None:
    """Keep `req` until a list can allocate it (idempotent per record)."""
    plain = json.dumps(asdict(req)).encode()
    row = session.get(ParkedAllocation, req.record)
    if row is not None:
        row.attempts += 1
        session.add(row)
        return
    session.add(ParkedAllocation(record=req.record, parked_at=datetime.now(UTC),
                                 sealed_request=ctx.key.seal(PARKED, (req.record,), plain)))
    session.flush()
    # The kind of wait only, in the log: no stratum, no cluster.
    log.warning("allocation.parked", record=req.record, waiting_for=type(why).__name__)
    audit.append(session, actor=req.actor.name, role=req.actor.role, action="allocation.parked",
                 entity_type="allocation_request", entity_id=req.record, record=req.record,
                 correlation_id=req.correlation_id, after={"waiting": True})


def _request(ctx: Context, row: ParkedAllocation) -> AllocationRequest:
    data = json.loads(ctx.key.open(PARKED, (row.record,), row.sealed_request))
    return AllocationRequest(**{**data, "actor": Actor(**data["actor"])})


def parked_count(session: Session) -> int:
    return len(list(session.exec(select(ParkedAllocation.record))))


def redrive(session: Session, ctx: Context) -> int:
    """Allocate every parked request a list can serve now; returns how many were."""
    done = 0
    rows = list(session.exec(select(ParkedAllocation).order_by(col(ParkedAllocation.parked_at))))
    for row in rows:
        try:
            with session.begin_nested():
                service.allocate(session, ctx, _request(ctx, row))
                session.delete(row)
                session.flush()
                audit.append(session, actor="service:randomization", role="system",
                             action="allocation.unparked", entity_type="allocation_request",
                             entity_id=row.record, record=row.record)
            done += 1
        except WAITING:
            continue  # still waiting: the savepoint undid this attempt
        except Exception as exc:  # a broken request must not stop the others or the seal
            log.error("allocation.redrive_failed", record=row.record, error=type(exc).__name__)
    return done
