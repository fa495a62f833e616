"""Facts the randomization service publishes. Blinded unless marked otherwise.

None of them carries an arm, a cluster or a stratum (a stratum key is a cluster): blinded
components (gateway's REDCap sync, notifications, safety) read this stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel

from .base import Event


class Allocated(Event):
    """Blinded: module and allocation number only, never arm or cluster."""

    subject: ClassVar[str] = "trial.v1.randomization.allocated"
    record: str
    allocation_number: str
    module: str
    allocated_at: datetime


class StratumRunningLow(Event):
    """Blinded alarm: some stratum of the active list has fewer free slots than the
    protocol's threshold. Counts only, no stratum and no record, and raised only by the
    batched check (once per `low_slots_alarm_batch` allocations), so it cannot be tied to
    one participant: which stratum it is, the statistician reads from the lists API
    (`GET /v1/lists`, the flags of that check) before extending it."""

    subject: ClassVar[str] = "trial.v1.randomization.stratum_running_low"
    list_id: str
    strata_running_low: int  # how many strata are below the threshold now
    fewest_free_slots: int
    threshold: int
    at: datetime


class EmergencyUnblinded(Event):
    """One participant's allocation was unblinded in an emergency (for the trial team's
    notification). Says who and why, never what: no arm, no cluster."""

    subject: ClassVar[str] = "trial.v1.randomization.emergency_unblinded"
    record: str
    allocation_number: str
    unblinded_by: str
    role: str
    reason: str
    at: datetime


class BaselineNeedsReview(Event):
    """Blinded: a design without a prediction step has a complete baseline whose
    stratification value is no level of its factor (a code not in the factor's codes, a
    non-number where cut points are declared, no site or data access group); staff correct
    it in REDCap and the next save allocates. `reason` is stable per field and names it;
    `detail` says what the field must hold. Never the value itself."""

    subject: ClassVar[str] = "trial.v1.randomization.needs_review"
    record: str
    reason: str
    field: str
    detail: str


class StageAllocated(Event):
    """A later-stage (SMART) allocation. Blinded: the option travels only in `sealed`, a
    `SealedStageOption` sealed to the gateway (which writes it to the stage's REDCap field);
    in clear are the stage, its allocation number and the time, never outcome or arm."""

    subject: ClassVar[str] = "trial.v1.randomization.stage_allocated"
    record: str
    stage: str
    stage_number: str
    allocated_at: datetime
    sealed: str


class SealedStageOption(BaseModel):
    """The content of `StageAllocated.sealed`."""

    option: str


class StageNeedsReview(Event):
    """The participant reached a stage's timepoint but its rule cannot class them (a value
    missing, not a number, or a baseline of 0): nothing is allocated until the form is
    corrected and saved again. Names the field, never its value."""

    subject: ClassVar[str] = "trial.v1.randomization.stage_needs_review"
    record: str
    stage: str
    field: str
    reason: str
