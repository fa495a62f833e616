"""The randomization design: strata, ratio, block lengths, list hygiene."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict

# A site key becomes part of a stratum key (`DYS|site-a`): no `|`, nothing that needs quoting.
SITE_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ModuleWeights(Strict):
    """Weight of each module within a cluster stratum, by its relation to the cluster."""

    matching: int = Field(gt=0)
    non_matching: int = Field(gt=0)


class ArmRule(Strict):
    """Which arm a slot belongs to, by the module's relation to the stratum's cluster."""

    matching: str
    non_matching: str


class RandomizationDesign(Strict):
    stratify_by: list[Literal["cluster", "site"]] = Field(min_length=1)
    module_weights: ModuleWeights
    arm_of: ArmRule
    block_lengths: list[int] = Field(min_length=1)
    low_slots_threshold: int = Field(ge=0)
    # The strata are looked at for the low-slot alarm only after this many allocations since
    # the last look (and never inside an allocation): the alarm, the running-low flags and
    # gauge then follow a batch, never one participant's stratum. Keep it below the threshold.
    low_slots_alarm_batch: int = Field(default=6, ge=1)
    sites: list[str] = Field(default_factory=list)
    # Slots generated per stratum when a list is created (rounded up to whole blocks);
    # None: whoever generates the list must say how many.
    initial_slots_per_stratum: int | None = Field(default=None, gt=0)
    # Allocation numbers run in allocation order over the whole trial (never per stratum,
    # which would group participants by cluster): prefix + zero-padded counter, `PP-0007`.
    allocation_number_prefix: str = Field(default="R-", pattern=r"^[A-Za-z0-9_.-]{0,16}$")
    allocation_number_digits: int = Field(default=4, ge=1, le=9)
    # Unsealing at closure is a two-person act: the first request lapses after this long.
    unseal_request_valid_hours: float = Field(default=24.0, gt=0)

    @field_validator("stratify_by")
    @classmethod
    def _cluster_and_no_repeats(cls, v: list[str]) -> list[str]:
        # Module weights are defined relative to the stratum's cluster, so cluster is required.
        if "cluster" not in v:
            raise ValueError("stratification must include 'cluster' (module weights depend on it)")
        if len(set(v)) != len(v):
            raise ValueError("a stratification factor is listed twice")
        return v

    @field_validator("sites")
    @classmethod
    def _site_keys(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not re.match(SITE_KEY, s)]
        if bad:
            raise ValueError(f"site keys must match {SITE_KEY} (no '|'): {bad}")
        if len(set(v)) != len(v):
            raise ValueError("site keys must be distinct")
        return v

    @model_validator(mode="after")
    def _batch_below_threshold(self) -> RandomizationDesign:
        # A stratum may use a whole batch of slots between two looks: with a batch at or
        # above the threshold it could run out before the alarm is ever raised.
        if self.low_slots_threshold and self.low_slots_alarm_batch >= self.low_slots_threshold:
            raise ValueError(f"low_slots_alarm_batch ({self.low_slots_alarm_batch}) must be "
                             f"below low_slots_threshold ({self.low_slots_threshold})")
        return self

    @field_validator("block_lengths")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(b <= 0 for b in v):
            raise ValueError("block lengths must be positive")
        if len(set(v)) != len(v):
            raise ValueError("block lengths must be distinct")
        return sorted(v)
