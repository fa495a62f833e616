"""What the reports service evaluates: the feasibility criteria, the recruitment plan and the
REDCap fields the CONSORT flow reads (withdrawal reasons and their preventable class).

Criteria name their numerator and denominator as *quantities* of the participant flow:

- `assessed`, `eligible`, `consented`, `randomized`
- `complete:<timepoint>[|<timepoint>…]` — the timepoint (any of them) is complete; for the
  baseline (anchor `consent`) that means every baseline form is complete in REDCap
- `due:<timepoint>` — randomized participants whose timepoint target date has passed

The numerator is always counted within the denominator (a participant outside the
denominator never adds to the numerator), so a proportion stays within [0, 1].
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict
from .trial import KEY

STAGES = ("assessed", "eligible", "consented", "randomized")
_QUANTITY = re.compile(r"^(?:(?P<stage>[a-z]+)|(?P<kind>complete|due):(?P<tps>[A-Za-z0-9_|]+))$")


def quantity_timepoints(quantity: str) -> list[str]:
    """The timepoints a quantity names (empty for a stage); ValueError when malformed."""
    m = _QUANTITY.match(quantity)
    if m is None or (m["stage"] and m["stage"] not in STAGES):
        raise ValueError(f"{quantity!r} is not a flow quantity (one of {', '.join(STAGES)}, "
                         "complete:<timepoint>[|<timepoint>], due:<timepoint>)")
    if m["stage"]:
        return []
    timepoints = m["tps"].split("|")
    if m["kind"] == "due" and len(timepoints) != 1:
        raise ValueError(f"{quantity!r}: due: names exactly one timepoint")
    return timepoints


class Threshold(Strict):
    """`verdict` when the value is at least `at_least` (the last threshold has none: the
    verdict for everything below). `after_strategy_change` replaces the verdict once the
    recruitment strategy was changed (the protocol's "105 after changed strategy")."""

    at_least: float | None = Field(None, ge=0)
    verdict: str = Field(pattern=KEY)
    after_strategy_change: str | None = Field(None, pattern=KEY)


class Criterion(Strict):
    key: str = Field(pattern=KEY)
    label: str
    numerator: str
    denominator: str
    # count: the verdict compares the numerator; proportion: numerator / denominator.
    # Either way the CI is the one of numerator / denominator.
    measure: Literal["count", "proportion"]
    thresholds: list[Threshold] = Field(min_length=1)
    ci_method: Literal["wilson"] = "wilson"
    confidence: float = Field(0.95, gt=0, lt=1)

    @field_validator("numerator", "denominator")
    @classmethod
    def _quantity(cls, v: str) -> str:
        quantity_timepoints(v)
        return v

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> Criterion:
        *bounded, last = self.thresholds
        if last.at_least is not None:
            raise ValueError("thresholds: the last threshold has no at_least (it catches the rest)")
        values = [t.at_least for t in bounded]
        for i, v in enumerate(values):
            if v is None:
                raise ValueError(f"thresholds[{i}].at_least: only the last threshold may omit it")
            if self.measure == "proportion" and v > 1:
                raise ValueError(f"thresholds[{i}].at_least: {v} is not a proportion (0..1)")
            if i and v >= values[i - 1]:  # type: ignore[operator]
                raise ValueError(f"thresholds[{i}].at_least: {v} must be below the one before")
        return self


class RecruitmentPlan(Strict):
    target: int = Field(gt=0, description="participants to randomize")
    planned_start: date | None = Field(None, description="default: the first screening")
    planned_weeks: int = Field(gt=0, description="recruitment period from the start")
    # A changed strategy needs this long to take effect before the planned end.
    readjust_lead_weeks: int = Field(ge=0)
    recent_weeks: int = Field(8, gt=0, description="window of the recent-rate projection")
    strategy_changed_on: date | None = None
    site_field: str | None = Field(None, description="baseline field naming the site")


class WithdrawalFields(Strict):
    """The withdrawal form's reason fields (form and yes/no flag: `redcap`)."""

    date: str
    reason: str
    preventable: str = Field(description="yes/no: could the study design have prevented it?")
    reasons: dict[str, str] = Field(min_length=1, description="REDCap code → reason key")
    lost_to_follow_up: list[str] = Field(
        min_length=1, description="reason keys that count as lost to follow-up (the rest: discontinued)")

    @model_validator(mode="after")
    def _known_reasons(self) -> WithdrawalFields:
        unknown = sorted(set(self.lost_to_follow_up) - set(self.reasons.values()))
        if unknown:
            raise ValueError(f"lost_to_follow_up: {unknown} are not reason keys")
        return self


class ReportsRules(Strict):
    primary_timepoint: str = Field(description="the timepoint whose completion means analysed")
    screening_date_field: str
    received_field: str | None = Field(
        None, description="yes/no on the withdrawal form (every event): the participant started "
                          "the allocated module; null: not recorded")
    recruitment: RecruitmentPlan
    withdrawal: WithdrawalFields
    feasibility: list[Criterion] = Field(min_length=1)

    def timepoint_references(self) -> list[tuple[str, str]]:
        """(dotted key, timepoint) for the cross-reference check of the whole protocol."""
        refs = [("reports.primary_timepoint", self.primary_timepoint)]
        for i, c in enumerate(self.feasibility):
            for part in ("numerator", "denominator"):
                refs += [(f"reports.feasibility[{i}].{part}", tp)
                         for tp in quantity_timepoints(getattr(c, part))]
        return refs
