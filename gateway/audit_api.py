"""Audit API for monitors: every chain (the gateway's and each service's) through one door.

`GET /api/v1/audit` merges the chains' entries in time order, filtered (service, entity,
participant, actor, action, time range) and paginated by an opaque cursor that remembers,
per chain, the last entry already returned; as JSON or CSV (`?format=csv` or
`Accept: text/csv`). A chain that cannot be read makes the answer a 503 naming it, never
a silently partial listing. Filtering by participant is itself a read of that
participant's history: the guard records it.

`GET /api/v1/audit/verify` re-computes every chain and compares it with its witnessed
head: a service's, as the gateway witnessed it (checked against the chain before it was
kept); the gateway's own, the newest any service witnessed. A chain shorter than its
witnessed head was truncated; one whose entry at that length has another hash was rewritten.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import heapq
import io
import json
from itertools import islice
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import Session

from services.core.audit_api import (
    MAX_PAGE,
    MAX_SEQ,
    AuditQuery,
    ChainReportRead,
    chain_report,
    entry_read,
    select_entries,
)
from services.core.audit_witness import WitnessedHeadRead
from services.core.db import unit_of_work
from services.core.errors import InvalidInput
from services.core.internal_token import HEADER, Caller, route_of
from services.core.roles import SERVICES

from . import repository
from .models import WitnessedHead
from .proxy import ServiceUnavailable, unavailable
from .schemas import AuditEntryOut, AuditPage, AuditVerification, ChainVerdict, WitnessedRead
from .security import GatewayCallerDep, GatewayRuntime, runtime_of

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
CHAINS = ("gateway", *SERVICES)
CSV_COLUMNS = ("service", "seq", "at", "actor", "role", "action", "entity_type", "entity_id",
               "record", "before", "after", "reason", "correlation_id", "prev_hash", "hash")
_TEXT = Field(default=None, min_length=1, max_length=200)


class AuditListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: list[str] | None = Field(default=None, description=f"one or more of {', '.join(CHAINS)}")
    entity_type: str | None = _TEXT
    entity_id: str | None = _TEXT
    participant: str | None = Field(default=None, min_length=1, max_length=200,
                                    description="the participant's record id (this read is audited)")
    actor: str | None = _TEXT
    action: str | None = Field(default=None, min_length=1, max_length=200,
                               description="exact action, or a prefix ending in `*`")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    limit: int = Field(default=100, gt=0, le=MAX_PAGE)
    cursor: str | None = Field(default=None, max_length=2000, description="`next_cursor` of the page before")
    format: Literal["json", "csv"] | None = None

    @field_validator("service")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = sorted(set(value or ()) - set(CHAINS))
        if unknown:
            raise ValueError(f"unknown service {unknown[0]!r}; known: {', '.join(CHAINS)}")
        return value


def encode_cursor(positions: dict[str, int]) -> str:
    raw = json.dumps(positions, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        positions = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput("not a cursor this API gave out", field="cursor") from None
    if not isinstance(positions, dict) or not all(
            k in CHAINS and isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEQ
            for k, v in positions.items()):
        raise InvalidInput("not a cursor this API gave out", field="cursor")
    return positions


def page_of(batches: dict[str, list[AuditEntryOut]], positions: dict[str, int],
            limit: int) -> tuple[list[AuditEntryOut], str | None]:
    """The first `limit` entries in time order and the cursor after them (None when done).

    Each chain's entries are taken as a prefix of what it returned, so moving that chain's
    position to the last entry taken loses and repeats nothing."""
    merged = heapq.merge(*batches.values(), key=lambda e: (e.at, e.service, e.seq))
    taken = list(islice(merged, limit))
    after = dict(positions)
    for entry in taken:
        after[entry.service] = max(after.get(entry.service, 0), entry.seq)
    more = len(taken) < sum(map(len, batches.values())) or any(
        len(b) >= limit for b in batches.values())
    return taken, encode_cursor(after) if more else None


def _request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


async def _service_json(runtime: GatewayRuntime, caller: Caller, service: str, path: str,
                        params: dict[str, Any]) -> Any:
    request_id = _request_id()
    headers = {HEADER: runtime.sign(caller, audience=service, request_id=request_id,
                                    routes={service: route_of("GET", path)})}
    if request_id:
        headers["x-request-id"] = request_id
    response = await runtime.proxy.send(service, "GET", path, headers=headers, params=params)
    if response.status_code != 200:
        raise ServiceUnavailable(service, f"answered {response.status_code} to {path}")
    return response.json()


def _local(runtime: GatewayRuntime, read: Any) -> Any:
    with Session(runtime.engine) as session:
        return read(session)


async def _entries(runtime: GatewayRuntime, caller: Caller, chain: str,
                   query: AuditQuery) -> list[AuditEntryOut]:
    if chain == "gateway":
        rows = await asyncio.to_thread(
            _local, runtime, lambda s: [entry_read(e) for e in select_entries(s, query)])
        return [AuditEntryOut(**r.model_dump(), service=chain) for r in rows]
    params = query.model_dump(mode="json", exclude_none=True)
    answer = await _service_json(runtime, caller, chain, "/v1/audit", params)
    try:
        return [AuditEntryOut.model_validate({**e, "service": chain}) for e in answer]
    except (TypeError, ValidationError):
        raise ServiceUnavailable(chain, "gave an audit listing that is not one") from None


def _csv_cell(value: Any) -> str:
    text = "" if value is None else (
        value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str))
    # A spreadsheet would run a cell that starts like a formula.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(entries: list[AuditEntryOut], next_cursor: str | None) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        row = entry.model_dump(mode="json")
        writer.writerow([_csv_cell(row[c]) for c in CSV_COLUMNS])
    headers = {"Content-Disposition": 'attachment; filename="tailor-audit.csv"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _chain_query(q: AuditListQuery, *, after_seq: int) -> AuditQuery:
    return AuditQuery(entity_type=q.entity_type, entity_id=q.entity_id, record=q.participant,
                      actor=q.actor, action=q.action, since=q.since, until=q.until,
                      after_seq=after_seq, limit=q.limit)


@router.get("", response_model=AuditPage,
            summary="Audit entries of every chain, merged in time order, filtered and paginated",
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}},
                             "description": "JSON page, or CSV with the next cursor in X-Next-Cursor"}})
async def list_audit(request: Request, caller: GatewayCallerDep,
                     q: Annotated[AuditListQuery, Query()]) -> AuditPage | Response:
    runtime = runtime_of(request)
    positions = decode_cursor(q.cursor)
    chains = [c for c in CHAINS if not q.service or c in q.service]
    try:
        batches = await asyncio.gather(*(
            _entries(runtime, caller, c, _chain_query(q, after_seq=positions.get(c, 0)))
            for c in chains))
    except ServiceUnavailable as exc:
        return unavailable(exc)
    entries, next_cursor = page_of(dict(zip(chains, batches, strict=True)), positions, q.limit)
    wants_csv = q.format == "csv" or (q.format is None and "text/csv" in request.headers.get("accept", ""))
    return _csv(entries, next_cursor) if wants_csv else AuditPage(entries=entries, next_cursor=next_cursor)


def _verdict(chain: str, report: ChainReportRead | None, head: WitnessedHead | None,
             reason: str | None = None) -> ChainVerdict:
    witnessed = None if head is None else WitnessedRead(
        length=head.length, head_hash=head.head_hash, announced_at=head.announced_at)
    if report is None:
        return ChainVerdict(service=chain, reachable=False, ok=False, length=None, head_hash=None,
                            first_broken_seq=None, problem=reason, witnessed=witnessed,
                            truncated=False)
    problem, truncated = report.problem, False
    if head is not None and report.length < head.length:
        truncated = True
        problem = problem or (f"the chain holds {report.length} entries, but {head.length} were "
                              f"witnessed on {head.announced_at.isoformat()}: it was truncated")
    elif head is not None and report.hash_at_seq != head.head_hash:
        problem = problem or (f"entry {head.length} is not the one witnessed on "
                              f"{head.announced_at.isoformat()}: the chain was rewritten")
    return ChainVerdict(service=chain, reachable=True, ok=report.ok and problem is None,
                        length=report.length, head_hash=report.head_hash,
                        first_broken_seq=report.first_broken_seq, problem=problem,
                        witnessed=witnessed, truncated=truncated)


def _verify_own(runtime: GatewayRuntime, at_seq: int | None, full: bool) -> ChainReportRead:
    """The gateway's chain, from its newest signed checkpoint; the new one is committed."""
    key = runtime.kernel.audit_key if runtime.kernel is not None else None
    with unit_of_work(runtime.engine) as session:
        return chain_report(session, at_seq=at_seq, key=key, full=full)


async def _verify_chain(runtime: GatewayRuntime, caller: Caller, chain: str,
                        head: WitnessedHead | None, full: bool = False) -> ChainVerdict:
    at_seq = head.length if head is not None and head.length > 0 else None
    try:
        if chain == "gateway":
            report = await asyncio.to_thread(_verify_own, runtime, at_seq, full)
        else:
            params: dict[str, Any] = {"at_seq": at_seq} if at_seq else {}
            if full:
                params["full"] = "true"
            answer = await _service_json(runtime, caller, chain, "/v1/audit/verify", params)
            report = ChainReportRead.model_validate(answer)
    except ServiceUnavailable as exc:
        return _verdict(chain, None, head, f"unreachable: {exc.reason}")
    except ValidationError:
        return _verdict(chain, None, head, "its verification answer is not one")
    return _verdict(chain, report, head)


async def _gateway_head(runtime: GatewayRuntime, caller: Caller) -> WitnessedHead | None:
    """The longest head of the gateway's chain that a reachable service witnessed."""
    async def of(service: str) -> list[WitnessedHeadRead]:
        try:
            answer = await _service_json(runtime, caller, service, "/v1/audit/witnessed", {})
            return [WitnessedHeadRead.model_validate(h) for h in answer]
        except (ServiceUnavailable, ValidationError, TypeError):
            return []

    found = [h for heads in await asyncio.gather(*(of(s) for s in SERVICES)) for h in heads]
    if not found:
        return None
    best = max(found, key=lambda h: h.length)
    return WitnessedHead(service="gateway", length=best.length, head_hash=best.head_hash,
                         announced_at=best.announced_at, received_at=best.announced_at)


@router.get("/verify", response_model=AuditVerification,
            summary="Verify every chain: length, head hash, first broken link, witnessed head")
async def verify_audit(request: Request, caller: GatewayCallerDep,
                       full: Annotated[bool, Query(description="re-hash every entry of every "
                                                   "chain, ignoring signed checkpoints")] = False,
                       ) -> AuditVerification:
    runtime = runtime_of(request)
    heads = {h.service: h for h in await asyncio.to_thread(_local, runtime, repository.witnessed_heads)}
    heads.pop("gateway", None)  # only another party's record of it counts
    gateway_head = await _gateway_head(runtime, caller)
    if gateway_head is not None:
        heads["gateway"] = gateway_head
    verdicts = await asyncio.gather(*(_verify_chain(runtime, caller, c, heads.get(c), full)
                                      for c in CHAINS))
    return AuditVerification(ok=all(v.ok for v in verdicts), services=list(verdicts))
