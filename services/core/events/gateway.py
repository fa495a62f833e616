"""Facts the gateway publishes (REDCap saves, audit heads)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from .base import Event


class FormSaved(BaseModel):
    """A form saved in REDCap, as one consumer sees it once it opened its sealed copy.
    `fields` are the record's saved data in that REDCap event, re-fetched through the API
    after the trigger, cut down to what that consumer needs (`form_fields.py`); for a
    repeating instrument, that instance's fields. Never arm or cluster: REDCap has neither.
    Not published as such: the gateway publishes one `SealedFormSaved` per consumer.
    Consumers read it tolerantly (a field added by a newer gateway is ignored); the gateway
    builds it from typed values only."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    project_id: int
    record: str
    event: str | None
    instrument: str
    repeat_instance: int | None = None
    complete_status: int
    fields: dict[str, str]
    trigger: str = Field(description="det | sweep")


class SealedFormSaved(Event):
    """A `FormSaved` for one consumer, sealed to that consumer's bus key: whoever else reads
    the bus or an outbox learns which record changed, nothing of what was saved."""

    consumer: ClassVar[str]
    record: str
    sealed: str


class FormSavedForAllocation(SealedFormSaved):
    """Baseline saves (consent, eligibility, age, sex, MPI-D items, baseline completion)
    and the withdrawal flag from any event."""

    subject: ClassVar[str] = "trial.v1.redcap.form_saved_for_allocation"
    consumer: ClassVar[str] = "allocation"


class FormSavedForNotifications(SealedFormSaved):
    """Completion of timepoint forms, the withdrawal flag, and the consent form's contact
    details (baseline): the only subject that carries contact details."""

    subject: ClassVar[str] = "trial.v1.redcap.form_saved_for_notifications"
    consumer: ClassVar[str] = "notifications"


class FormSavedForSafety(SealedFormSaved):
    """Adverse-event, NEQ and INEP forms: that instrument's own fields only."""

    subject: ClassVar[str] = "trial.v1.redcap.form_saved_for_safety"
    consumer: ClassVar[str] = "safety"


class FormSavedForReports(SealedFormSaved):
    """Every save's completion status with the few fields the CONSORT flow and feasibility
    read (screening, eligibility, consent, withdrawal reasons, seriousness, NEQ items);
    never contact details or MPI-D answers."""

    subject: ClassVar[str] = "trial.v1.redcap.form_saved_for_reports"
    consumer: ClassVar[str] = "reports"


class FormSavedForRandomization(SealedFormSaved):
    """Only for a design without a prediction step: baseline saves with consent,
    eligibility, withdrawal, the baseline forms' completion and the stratification fields
    (site, declared factors) the randomization service reads its levels from."""

    subject: ClassVar[str] = "trial.v1.redcap.form_saved_for_randomization"
    consumer: ClassVar[str] = "randomization"


FORM_SAVED_FOR: dict[str, type[SealedFormSaved]] = {
    cls.consumer: cls for cls in (FormSavedForAllocation, FormSavedForNotifications,
                                  FormSavedForSafety, FormSavedForReports,
                                  FormSavedForRandomization)}


class AuditHead(Event):
    """Beacon of a service's audit-chain head, on `trial.v1.<service>.audit_head`: a witness
    that keeps the heads can later prove a chain was not truncated or rewritten."""

    subject: ClassVar[str] = "trial.v1.{service}.audit_head"
    service: str
    length: int
    head_hash: str
    at: datetime
    # The gateway's own heads carry its Ed25519 signature (`kid.sig`) over `head_message`.
    signature: str | None = None

    def head_message(self) -> bytes:
        return f"tailor-audit-head\n{self.service}\n{self.length}\n{self.head_hash}".encode()


class RedcapWriteFailed(Event):
    """A write-back REDCap refused for good; kept in the dead-letter stream for a person."""

    subject: ClassVar[str] = "trial.dlq.gateway-redcap-sync"
    write_id: str
    record: str
    kind: str
    error: str
