"""Request and response models. Every response is blinded: no arm, no cluster, no module
(the notifications service never stores them), and no contact details except where a
coordinator needs them to do a staff task (call script, letter)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["email", "sms", "phone", "letter"]


class Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ReminderRead(Read):
    attempt: int
    channel: str
    due_at: datetime
    state: str
    sent_at: datetime | None = None
    cancel_reason: str | None = None


class TimepointRead(Read):
    timepoint: str
    label: str
    redcap_event: str
    due_on: date
    window_opens_at: datetime
    window_closes_at: datetime
    respond_by: date
    status: str  # not_due | due | in_progress | complete | overdue
    completed_forms: list[str]
    missing_forms: list[str]
    completed_at: datetime | None
    reminders: list[ReminderRead]


class ScheduleRead(Read):
    """A participant's assessment schedule, for blinded staff (no module, no diary)."""

    record: str
    allocation_number: str
    allocated_at: datetime
    withdrawn_at: datetime | None
    timepoints: list[TimepointRead]


class TaskRead(Read):
    id: int
    record: str
    timepoint: str
    channel: str
    due_at: datetime
    state: str
    claimed_by: str | None
    outcome: str | None
    call_script: str | None = Field(
        None, description="phone tasks: what to say, with the number to call")
    letter_url: str | None = Field(None, description="letter tasks: the print-ready letter")


class FollowUpRead(Read):
    id: int
    kind: str
    record: str | None
    message_key: str | None
    summary: str
    state: str
    resolution: str | None
    resolved_by: str | None
    created_at: datetime


class FollowUpResolve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Literal["resend", "sent", "not_sent", "done"] = Field(
        description="unknown e-mail: resend, sent or not_sent; anything else: done")
    note: str | None = Field(None, max_length=500, description="no clinical details")


class TaskOutcomeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["reached", "voicemail", "wrong_number", "sent"]
    note: str | None = Field(None, max_length=500, description="no clinical details")


class OptOutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel


class OptOutRead(BaseModel):
    record: str
    channel: str
    cancelled: int


class MessageRead(Read):
    """Delivery state of one message; never its text or the address it went to."""

    key: str
    kind: str
    timepoint: str | None
    attempt: int | None
    channel: str
    recipient: str | None
    due_at: datetime
    state: str
    tries: int
    sent_at: datetime | None
    delivered_at: datetime | None
    answered_at: datetime | None = Field(None, description="diary prompts only")
    finished_at: datetime | None
    cancel_reason: str | None
    error: str | None


class TimepointRetention(BaseModel):
    timepoint: str
    label: str
    scheduled: int
    due: int
    complete: int
    in_progress: int
    overdue: int
    window_closed: int
    responded: int
    response_rate: float | None
    response_ci_low: float | None = Field(description="Wilson 95% interval")
    response_ci_high: float | None
    reminders_needed: dict[int, int] = Field(
        description="reminders sent before completion → number of completers")
    mean_reminders_needed: float | None


class ChannelRetention(BaseModel):
    channel: str
    scheduled: int
    sent: int
    delivered: int
    failed: int
    cancelled: int
    unknown: int = Field(description="e-mails whose sender stopped mid-send (not resent)")


class RetentionRead(BaseModel):
    at: datetime
    timepoints: list[TimepointRetention]
    channels: list[ChannelRetention]


class CallbackRead(BaseModel):
    status: Literal["applied", "duplicate", "ignored"]
    state: str | None = None
