"""Request and response models of the gateway's own routes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.core.audit_api import AuditEntryRead
from services.core.roles import Role


class WitnessedHeadRead(BaseModel):
    service: str
    length: int
    head_hash: str
    announced_at: datetime
    received_at: datetime


# ── API keys (admin) ────────────────────────────────────────────────────────────────


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="whose key, for what")
    role: Role = Field(description="the one role the key grants (not `redcap`)")
    expires_in_days: int | None = Field(default=None, gt=0, le=3650,
                                        description="none = until revoked")


class ApiKeyRead(BaseModel):
    id: str
    name: str
    role: Role
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyIssued(ApiKeyRead):
    token: str = Field(description="the key itself: shown this once, only its hash is stored")


# ── audit (monitor) ─────────────────────────────────────────────────────────────────


class AuditEntryOut(AuditEntryRead):
    service: str = Field(description="whose chain holds the entry")


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; none = done")


class WitnessedRead(BaseModel):
    length: int
    head_hash: str
    announced_at: datetime


class ChainVerdict(BaseModel):
    service: str
    reachable: bool
    ok: bool
    length: int | None
    head_hash: str | None
    first_broken_seq: int | None
    problem: str | None
    witnessed: WitnessedRead | None = Field(description="the newest head the gateway witnessed")
    truncated: bool = Field(description="the chain is shorter than a head it once announced")


class AuditVerification(BaseModel):
    ok: bool
    services: list[ChainVerdict]


# ── operations ──────────────────────────────────────────────────────────────────────


class ServiceHealth(BaseModel):
    service: str
    ready: bool
    checks: dict[str, str]


class OpsHealth(BaseModel):
    ready: bool
    services: list[ServiceHealth]


class DeadLetterRead(BaseModel):
    """Where and why a message died; never its payload (ops read no participant data)."""

    seq: int
    consumer: str
    reason: str | None
    error: str | None = None
    original_subject: str | None
    stream_seq: int | None
    deliveries: int | None
