"""The envelope and the base of every event payload.

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
