"""The read model's facts, as the domain sees them: what the bus told us, per participant.

Nothing here is an arm or a cluster: those are passed in per request (`ArmOf`) from the
randomization service's unblinded answer and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class ParticipantFacts:
    record: str
    first_seen: date  # when the first form of this record reached the bus
    screened_on: date | None = None
    site: str | None = None
    eligible: bool | None = None
    consent: bool | None = None
    consented_on: date | None = None
    baseline_complete_on: date | None = None  # every baseline form complete since then
    randomized_at: datetime | None = None
    module: str | None = None
    withdrawn_on: date | None = None
    withdrawal_reason: str | None = None  # a reason key of the protocol
    preventable: bool | None = None
    received_on: date | None = None  # started the allocated module

    @property
    def assessed_on(self) -> date:
        return self.screened_on or self.first_seen


@dataclass(frozen=True)
class TimepointDone:
    record: str
    timepoint: str
    completed_at: datetime
    reminders_sent: int


@dataclass(frozen=True)
class NeqAnswer:
    """One NEQ questionnaire: how many negative effects happened, how many the participant
    attributed to the treatment."""

    record: str
    timepoint: str
    effects: int
    attributed_to_treatment: int


@dataclass(frozen=True)
class AdverseEventFact:
    record: str
    key: str  # event and repeat instance: one AE form
    serious: bool
    reported_on: date


@dataclass(frozen=True)
class DiaryWeek:
    """A diary participant's prompts of one ISO week of their own calendar."""

    record: str
    week: str  # "YYYY-Www"
    week_start: date  # its Monday
    prompts_sent: int
    answered_in_time: int


@dataclass(frozen=True)
class Facts:
    participants: list[ParticipantFacts] = field(default_factory=list)
    timepoints: list[TimepointDone] = field(default_factory=list)
    neq: list[NeqAnswer] = field(default_factory=list)
    adverse_events: list[AdverseEventFact] = field(default_factory=list)
    diary: list[DiaryWeek] = field(default_factory=list)


@dataclass(frozen=True)
class ArmOf:
    """record → (arm, cluster), from the randomization service, for one unblinded report."""

    arm: dict[str, str | None]
    cluster: dict[str, str | None]
