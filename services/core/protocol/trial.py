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


class Arm(Strict):
    key: str = Field(pattern=KEY)
    label: str


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
