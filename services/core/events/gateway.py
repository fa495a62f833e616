"""Facts the gateway publishes (REDCap saves, audit heads)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import Field

from .base import Event


class FormSaved(Event):
    """A form was saved in REDCap. `fields` is the record's saved data in that REDCap event
    (every field, with `<form>_complete`), re-fetched through the API after the trigger; for
    a repeating instrument, that instance's fields. Never arm or cluster: REDCap has neither."""

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


class RedcapWriteFailed(Event):
    """A write-back REDCap refused for good; kept in the dead-letter stream for a person."""

    subject: ClassVar[str] = "trial.dlq.gateway-redcap-sync"
    write_id: str
    record: str
    kind: str
    error: str
