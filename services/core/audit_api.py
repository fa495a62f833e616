"""Every process's own audit trail over HTTP, for monitors through the gateway.

`GET /v1/audit` lists entries (filtered, paginated by sequence number: pass the last
`seq` you saw as `after_seq`); `GET /v1/audit/verify` re-computes the chain from the newest
checkpoint signed with the service's key (`full=true`: from the first entry) and reports
its length, head hash and first broken link; `GET /v1/audit/witnessed` gives the
newest head of the gateway's chain this service witnessed (see audit_witness.py).
`at_seq` lets a witness compare the hash it once saw at that length with what the chain
holds now (a rewritten chain fails).

The gateway reads these on a monitor's behalf (`/api/v1/<service>/v1/audit…`) and uses
the same query functions for its own chain. Entries never hold arm or cluster in
plaintext (see services/core/audit.py), so the listing needs no blinded shape.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from . import audit, audit_witness
from .audit import AuditEntry
from .audit_witness import WitnessedHeadRead
from .auth import CallerDep
from .http import SessionDep

MAX_PAGE = 1000
MAX_SEQ = 2**63 - 1  # the largest sequence number a database integer holds
_TEXT = Field(default=None, min_length=1, max_length=200)


class AuditQuery(BaseModel):
    """Filters of an audit listing; every one is optional and they combine with AND."""

    model_config = ConfigDict(extra="forbid")

    entity_type: str | None = _TEXT
    entity_id: str | None = _TEXT
    record: str | None = Field(default=None, min_length=1, max_length=200,
                               description="the participant's record id")
    actor: str | None = _TEXT
    action: str | None = Field(default=None, min_length=1, max_length=200,
                               description="exact action, or a prefix ending in `*` (`allocation.*`)")
    since: AwareDatetime | None = Field(default=None, description="entries at or after this time")
    until: AwareDatetime | None = Field(default=None, description="entries before this time")
    after_seq: int = Field(default=0, ge=0, le=MAX_SEQ, description="the last seq already seen (pagination)")
    limit: int = Field(default=200, gt=0, le=MAX_PAGE)


class AuditEntryRead(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    entity_type: str
    entity_id: str
    record: str | None
    before: Any
    after: Any
    reason: str | None
    correlation_id: str | None
    prev_hash: str
    hash: str


class ChainReportRead(BaseModel):
    ok: bool
    length: int
    head_hash: str
    first_broken_seq: int | None
    problem: str | None
    at_seq: int | None = Field(default=None, description="the seq asked for with `at_seq`")
    hash_at_seq: str | None = Field(default=None,
                                    description="the stored hash of entry `at_seq`, if it exists")
    checkpoint_seq: int | None = Field(
        default=None, description="the signed checkpoint the verification started from")
    rows_read: int = Field(default=0, description="entries re-hashed by this verification")


def select_entries(session: Session, query: AuditQuery) -> list[AuditEntry]:
    """Entries matching `query`, in chain order, at most `query.limit`."""
    statement = select(AuditEntry).where(col(AuditEntry.seq) > query.after_seq)
    exact = ((AuditEntry.entity_type, query.entity_type), (AuditEntry.entity_id, query.entity_id),
             (AuditEntry.record, query.record), (AuditEntry.actor, query.actor))
    for column, value in exact:
        if value is not None:
            statement = statement.where(col(column) == value)
    if query.action is not None:
        if query.action.endswith("*"):
            prefix = query.action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(col(AuditEntry.action).like(f"{prefix}%", escape="\\"))
        else:
            statement = statement.where(col(AuditEntry.action) == query.action)
    if query.since is not None:
        statement = statement.where(col(AuditEntry.at) >= query.since)
    if query.until is not None:
        statement = statement.where(col(AuditEntry.at) < query.until)
    return list(session.exec(statement.order_by(col(AuditEntry.seq)).limit(query.limit)))


def _parsed(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:  # written by audit.append as canonical JSON; keep anything else as is
        return text


def entry_read(entry: AuditEntry) -> AuditEntryRead:
    fields = entry.model_dump()
    return AuditEntryRead.model_validate(
        {**fields, "before": _parsed(entry.before), "after": _parsed(entry.after)})


def chain_report(session: Session, *, at_seq: int | None = None,
                 key: audit.CheckpointKey | None = None, full: bool = False) -> ChainReportRead:
    """With the service's checkpoint key, only the entries after its newest signed
    checkpoint are re-hashed (and a new checkpoint is staged in `session`); `full`
    re-hashes the whole chain whatever the checkpoints say."""
    report = audit.verify(session, key=key, full=full)
    entry = session.get(AuditEntry, at_seq) if at_seq else None
    return ChainReportRead(ok=report.ok, length=report.length, head_hash=report.head_hash,
                           first_broken_seq=report.first_broken_seq, problem=report.problem,
                           at_seq=at_seq, hash_at_seq=entry.hash if entry else None,
                           checkpoint_seq=report.checkpoint_seq, rows_read=report.rows_read)


def audit_router() -> APIRouter:
    """Mounted by `build_app` for every process; monitors only (permission table)."""
    router = APIRouter(prefix="/v1", tags=["audit"])

    @router.get("/audit", response_model=list[AuditEntryRead],
                summary="This service's audit entries, filtered, in chain order")
    def kernel_audit_entries(session: SessionDep, _caller: CallerDep,
                   query: Annotated[AuditQuery, Query()]) -> list[AuditEntryRead]:
        return [entry_read(e) for e in select_entries(session, query)]

    @router.get("/audit/verify", response_model=ChainReportRead,
                summary="Re-compute this service's chain: length, head hash, first broken link")
    def kernel_audit_verification(
            request: Request, session: SessionDep, _caller: CallerDep,
            at_seq: Annotated[int | None, Query(gt=0, le=MAX_SEQ)] = None,
            full: Annotated[bool, Query(description="re-hash every entry, ignoring the "
                                                    "signed checkpoints")] = False,
    ) -> ChainReportRead:
        key = getattr(request.app.state.kernel, "audit_key", None)
        return chain_report(session, at_seq=at_seq, key=key, full=full)

    @router.get("/audit/witnessed", response_model=list[WitnessedHeadRead],
                summary="The newest head of the gateway's chain that this service witnessed")
    def kernel_audit_witnessed(session: SessionDep, _caller: CallerDep) -> list[WitnessedHeadRead]:
        found = audit_witness.witnessed(session, "gateway")
        return [found] if found else []

    return router
