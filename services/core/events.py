"""Event contracts: the only data services exchange.

Subjects are `trial.v1.<service>.<fact>`. A field is added, never renamed; a breaking
change is a new `v2` subject. Cluster and arm appear only in events that blinded
components never read (see DESIGN.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Payload of a fact; subclasses set `subject`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: ClassVar[str]


E = TypeVar("E", bound=Event)


class Envelope(BaseModel):
    """What travels on the bus: the event id (= outbox id = Nats-Msg-Id) and the payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=lambda: uuid4().hex)
    subject: str
    producer: str
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = None
    record: str | None = Field(default=None, description="participant record id, for tracing")
    data: dict[str, Any]

    def payload(self, cls: type[E]) -> E:
        return cls.model_validate(self.data)


# ── Gateway ────────────────────────────────────────────────────────────────


class FormSaved(Event):
    subject: ClassVar[str] = "trial.v1.redcap.form_saved"
    project_id: int
    record: str
    event: str | None
    instrument: str
    repeat_instance: int | None = None
    complete_status: int
    fields: dict[str, str]
    trigger: str = Field(description="det | sweep")


class AuditHead(Event):
    """Beacon of a service's audit-chain head, on `trial.v1.<service>.audit_head`: a witness
    that keeps the heads can later prove a chain was not truncated or rewritten."""

    subject: ClassVar[str] = "trial.v1.{service}.audit_head"
    service: str
    length: int
    head_hash: str
    at: datetime


# ── Allocation ─────────────────────────────────────────────────────────────


class ClusterAssigned(Event):
    """Unblinding data: read by the randomization service only."""

    subject: ClassVar[str] = "trial.v1.allocation.cluster_assigned"
    record: str
    cluster: str
    probabilities: dict[str, float]
    model_version: str
    low_confidence: bool
    site: str | None = None
    pilot: bool = False


class AllocationNeedsReview(Event):
    subject: ClassVar[str] = "trial.v1.allocation.needs_review"
    record: str
    reason: str


# ── Randomization ──────────────────────────────────────────────────────────


class Allocated(Event):
    """Blinded: module and allocation number only, never arm or cluster."""

    subject: ClassVar[str] = "trial.v1.randomization.allocated"
    record: str
    allocation_number: str
    module: str
    allocated_at: datetime
