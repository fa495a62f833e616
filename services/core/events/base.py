"""The envelope and the base of every event payload.

Subjects are `trial.v1.<service>.<fact>`. A field is added, never renamed; a breaking
change is a new `v2` subject. Cluster and arm appear only in events that blinded
components never read.

Producers are strict (constructing an event with an unknown field fails, catching typos);
consumers read tolerantly through `read()`: a field they do not know yet — added by a
newer producer during a rolling deploy — is ignored. A payload that lacks or breaks a
field they need is a `ContractViolation`, which no retry can heal: every consumer
dead-letters it at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import PermanentError


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Payload of a fact; subclasses set `subject`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: ClassVar[str]


    @classmethod
    def read(cls: type[E], data: dict[str, Any]) -> E:
        """Consumer side: ignore fields this version does not know."""
        return _tolerant(cls, data)


E = TypeVar("E", bound=Event)
M = TypeVar("M", bound=BaseModel)


class ContractViolation(PermanentError):
    """A payload that lacks or breaks a field the consumer needs. Names fields, never values
    (a value can be a blinded fact)."""


def _tolerant(cls: type[M], data: object) -> M:
    if not isinstance(data, dict):
        raise ContractViolation(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    known = {k: v for k, v in data.items() if k in cls.model_fields}
    try:
        return cls.model_validate(known)
    except ValidationError as err:
        fields = sorted({".".join(map(str, e["loc"])) or "payload" for e in err.errors()})
        raise ContractViolation(f"{cls.__name__} is invalid at {', '.join(fields)}") from None


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

    @classmethod
    def read(cls, raw: bytes | str) -> Envelope:
        """Consumer side: parse what came off the bus, ignoring envelope fields added later."""
        try:
            data = json.loads(raw)
        except ValueError:
            raise ContractViolation("not a Tailor event envelope: not JSON") from None
        return _tolerant(cls, data)

    def payload(self, cls: type[E]) -> E:
        """The payload as the consumer's version of `cls` (tolerant, see `Event.read`)."""
        return cls.read(self.data)
