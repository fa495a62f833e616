"""Who and what the trial is about: arms, modules, clusters, timepoints."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from .base import Strict

KEY = r"^[A-Za-z][A-Za-z0-9_]*$"


class TrialContact(Strict):
    """Someone of the trial team who is e-mailed when a follow-up is opened for them."""

    role: str
    name: str
    email: str


class TrialInfo(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    registration: str | None = None
    sponsor: str | None = None
    contacts: list[TrialContact] = []  # the trial team: follow-ups are e-mailed to them
    # The planned number of randomized participants (the demo enters this many by default).
    sample_size: int | None = Field(default=None, gt=0)


class Arm(Strict):
    """A trial arm. `ratio` is its share of the allocation (arms 2 and 1: 2:1); `modules`
    are the treatment modules it may deliver (optional; with personalization the modules are
    weighted per cluster instead and each arm's ratio follows from those weights)."""

    key: str = Field(pattern=KEY)
    label: str
    ratio: int = Field(default=1, gt=0)
    modules: list[str] = Field(default_factory=list)


class Module(Strict):
    key: str = Field(pattern=KEY)
    label: str
    weeks: int = Field(gt=0)
    delivery: str | None = None


class Cluster(Strict):
    key: str = Field(pattern=KEY)
    label: str
    matching_module: str


class Timepoint(Strict):
    """An assessment timepoint; `anchor` + `offset_days` place it in time.

    `anchor` is `allocation` or the key of an earlier timepoint; the baseline
    (anchor `consent`) happens before allocation and is never scheduled.
    """

    key: str = Field(pattern=KEY)
    label: str
    redcap_event: str
    anchor: str
    offset_days: int = Field(ge=0)
    window_days: tuple[int, int] = (0, 14)
    forms: list[str] = Field(min_length=1)
    # Forms the participant fills in as REDCap surveys: each reminder carries the
    # participant's own link for them, fetched from REDCap at send time (one survey: its
    # survey link; several: the participant's survey-queue link). Staff-entered forms and
    # forms holding staff fields (PerPAIN's pgic also holds the therapist's rating) stay off.
    surveys: list[str] = Field(default_factory=list)
    mode: Literal["questionnaire", "interview", "questionnaire+interview"] = "questionnaire"

    @field_validator("window_days")
    @classmethod
    def _window_ordered(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] > 0 or v[1] < 0:
            raise ValueError("window must contain day 0: (days before ≤ 0, days after ≥ 0)")
        return v

    @field_validator("forms")
    @classmethod
    def _form_names(cls, v: list[str]) -> list[str]:
        bad = [f for f in v if not re.match(r"^[a-z][a-z0-9_]*$", f)]
        if bad:
            raise ValueError(f"not REDCap instrument names: {bad}")
        return v


class EligibilityCriterion(Strict):
    """One inclusion or exclusion criterion, recorded as a yes/no field on the screening form."""

    field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str


class Eligibility(Strict):
    """The screening criteria as REDCap fields: eligible = every inclusion criterion met
    (1) and no exclusion criterion (0). Staff confirm it in `redcap.fields.eligible`."""

    inclusion: list[EligibilityCriterion] = Field(min_length=1)
    exclusion: list[EligibilityCriterion] = Field(default_factory=list)

    @property
    def fields(self) -> list[str]:
        return [c.field for c in (*self.inclusion, *self.exclusion)]

    def eligible(self, values: dict[str, str]) -> bool:
        return (all(values.get(c.field) == "1" for c in self.inclusion)
                and all(values.get(c.field) == "0" for c in self.exclusion))
