"""The randomization design: method, strata, ratio, block lengths, list hygiene.

One vocabulary for every design a trials unit runs:

- **arms** (trial.py) carry their allocation ratio and optional treatment modules;
- **factors** are stratification factors read from REDCap fields (their choice codes, or a
  continuous value cut at declared points), the site, or the predicted cluster;
  `stratify_by` names the factors whose levels form the strata (their product);
- **method**: `permuted_blocks` (variable-length blocks per stratum), `minimization`
  (Pocock–Simon over the declared factors with their weights and a random element) or
  `group` (pre-formed groups randomized as units by permuted blocks; members inherit);
- **personalization** (optional): PerPAIN's rule, "the module matching the predicted cluster
  vs one of the others", written as `module_weights` + `arm_of`; only a personalized
  design has a prediction step (the allocation service) and the `cluster` factor;
- **stages** (optional, SMART): further randomizations triggered by a decision rule on
  REDCap data at a timepoint, each with its own options per outcome and its own fields.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict

# A level (site, field level, cluster) becomes part of a stratum key (`DYS|site-a`): no `|`,
# nothing that needs quoting.
SITE_KEY = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
LEVEL_KEY = SITE_KEY
FACTOR_KEY = r"^[a-z][a-z0-9_]*$"
BUILT_IN_FACTORS = ("cluster", "site")


class ModuleWeights(Strict):
    """Weight of each module within a cluster stratum, by its relation to the cluster."""

    matching: int = Field(gt=0)
    non_matching: int = Field(gt=0)


class ArmRule(Strict):
    """Which arm a slot belongs to, by the module's relation to the stratum's cluster."""

    matching: str
    non_matching: str


def _distinct_levels(v: list[str], what: str) -> list[str]:
    bad = [s for s in v if not re.match(LEVEL_KEY, s)]
    if bad:
        raise ValueError(f"{what} must match {LEVEL_KEY} (no '|'): {bad}")
    if len(set(v)) != len(v):
        raise ValueError(f"{what} must be distinct")
    return v


class Factor(Strict):
    """A stratification (or minimization) factor declared from a REDCap field.

    Exactly one of `codes` (REDCap choice code → level) or `cut_points` (ascending
    boundaries of a numeric field; a value v has level i when cut_points[i-1] ≤ v <
    cut_points[i], so each boundary opens the next level) with `levels` naming the
    len(cut_points) + 1 intervals. `weight` is its weight in minimization.
    """

    key: str = Field(pattern=FACTOR_KEY)
    field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    codes: dict[str, str] | None = None
    cut_points: list[float] | None = None
    levels: list[str] | None = None
    weight: float = Field(default=1.0, gt=0)
    label: str | None = None

    @model_validator(mode="after")
    def _codes_or_cuts(self) -> Factor:
        if (self.codes is None) == (self.cut_points is None):
            raise ValueError("declare exactly one of 'codes' (a choice field) or "
                             "'cut_points' (a numeric field)")
        if self.key in BUILT_IN_FACTORS:
            raise ValueError(f"{self.key!r} is a built-in factor; name a field factor otherwise")
        if self.codes is not None:
            if not self.codes:
                raise ValueError("codes: at least one REDCap code")
            if self.levels is not None:
                raise ValueError("levels: a choice factor's levels are its codes' values")
            _distinct_levels(list(dict.fromkeys(self.codes.values())), "codes' levels")
        else:
            cuts = self.cut_points or []
            if not cuts or any(b <= a for a, b in pairwise(cuts)):
                raise ValueError("cut_points must be one or more strictly ascending numbers")
            if self.levels is None or len(self.levels) != len(cuts) + 1:
                raise ValueError(f"levels: {len(cuts) + 1} names are needed, one per interval "
                                 "between the cut points")
            _distinct_levels(self.levels, "levels")
        return self

    @property
    def level_keys(self) -> tuple[str, ...]:
        if self.codes is not None:
            return tuple(dict.fromkeys(self.codes.values()))
        return tuple(self.levels or ())

    def level_of(self, raw: str | None) -> str:
        """The level of a REDCap value; ValueError naming the field when it has none."""
        value = (raw or "").strip()
        if not value:
            raise ValueError(f"{self.field}: no value")
        if self.codes is not None:
            if value not in self.codes:
                raise ValueError(f"{self.field}: {value!r} is not one of the codes "
                                 f"{sorted(self.codes)}")
            return self.codes[value]
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{self.field}: {value!r} is not a number") from None
        if number != number:  # NaN has no interval
            raise ValueError(f"{self.field}: not a number")
        cuts = self.cut_points or []
        index = sum(1 for c in cuts if number >= c)
        return (self.levels or [])[index]


class SiteSource(Strict):
    """Where a participant's site comes from: REDCap's data access group (default) or a field
    whose value is the site key."""

    field: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    # A choice field's REDCap code → site key (without: the value is the site key).
    codes: dict[str, str] | None = None


class Minimization(Strict):
    """Pocock–Simon: the factors are those named in `stratify_by`, weighted by their weight
    (built-in `site`: `site_weight`, `cluster`: `cluster_weight`)."""

    p_preferred: float = Field(ge=0.5, le=1.0, description="chance of the preferred arm")
    measure: Literal["range", "variance"] = "range"
    site_weight: float = Field(default=1.0, gt=0)
    cluster_weight: float = Field(default=1.0, gt=0)


class GroupRandomization(Strict):
    """Pre-formed groups (e.g. therapy groups at a site) randomized as units when closed."""

    group_field: str = Field(pattern=r"^[a-z][a-z0-9_]*$",
                             description="baseline field holding the participant's group id")
    min_group_size: int = Field(default=1, ge=1)
    max_group_size: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _sizes(self) -> GroupRandomization:
        if self.max_group_size is not None and self.max_group_size < self.min_group_size:
            raise ValueError("max_group_size is below min_group_size")
        return self


class ResponseRule(Strict):
    """Responder when `field` at the stage's timepoint fell by at least `min_reduction`
    (a fraction) from `baseline_field` at baseline."""

    field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    baseline_field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min_reduction: float = Field(gt=0, le=1)


class StageOption(Strict):
    key: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    label: str
    ratio: int = Field(default=1, gt=0)


class Stage(Strict):
    """A later randomization (SMART): at `timepoint`, participants with a first-stage
    allocation (not withdrawn) are classed by `rule` and randomized among their outcome's
    options, in strata of their own per outcome and first-stage arm (permuted blocks of
    `block_lengths`); the result is written to the stage's REDCap fields (`number_field`,
    `option_field`, on the allocation form in the timepoint's event)."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    timepoint: str
    rule: ResponseRule
    responders: list[StageOption] = Field(min_length=2)
    non_responders: list[StageOption] = Field(min_length=2)
    block_lengths: list[int] = Field(min_length=1)
    number_field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    option_field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")

    @model_validator(mode="after")
    def _distinct(self) -> Stage:
        for name in ("responders", "non_responders"):
            keys = [o.key for o in getattr(self, name)]
            if len(set(keys)) != len(keys):
                raise ValueError(f"{name}: duplicate option keys")
            unit = sum(o.ratio for o in getattr(self, name))
            bad = [b for b in self.block_lengths if b <= 0 or b % unit]
            if bad:
                raise ValueError(f"block_lengths {bad} are not positive multiples of {unit}, "
                                 f"the sum of the {name}' ratios")
        return self


class RandomizationDesign(Strict):
    method: Literal["permuted_blocks", "minimization", "group"] = "permuted_blocks"
    # Factors whose levels form the strata (blocks, group) or which minimization balances.
    stratify_by: list[str] = Field(default_factory=list)
    factors: list[Factor] = Field(default_factory=list)
    site: SiteSource = Field(default_factory=SiteSource)
    # Personalization (PerPAIN): both or neither.
    module_weights: ModuleWeights | None = None
    arm_of: ArmRule | None = None
    minimization: Minimization | None = None
    group: GroupRandomization | None = None
    stages: list[Stage] = Field(default_factory=list)
    block_lengths: list[int] = Field(default_factory=list)
    low_slots_threshold: int = Field(default=0, ge=0)
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

    @property
    def personalized(self) -> bool:
        """A prediction step decides the cluster; the modules are weighted by it."""
        return self.module_weights is not None

    @property
    def factor_by_key(self) -> dict[str, Factor]:
        return {f.key: f for f in self.factors}

    @field_validator("stratify_by")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a stratification factor is listed twice")
        return v

    @field_validator("sites")
    @classmethod
    def _site_keys(cls, v: list[str]) -> list[str]:
        return _distinct_levels(v, "site keys")

    @field_validator("block_lengths")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(b <= 0 for b in v):
            raise ValueError("block lengths must be positive")
        if len(set(v)) != len(v):
            raise ValueError("block lengths must be distinct")
        return sorted(v)

    @model_validator(mode="after")
    def _method_parts(self) -> RandomizationDesign:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"randomization.{x}" for x in problems))
        return self

    def problems(self) -> list[str]:
        """What is wrong within this section, each naming its key (relative to it)."""
        p: list[str] = []
        if (self.module_weights is None) != (self.arm_of is None):
            p.append("module_weights and arm_of: personalization needs both (or neither)")
        known = {f.key for f in self.factors} | {"site"} | (
            {"cluster"} if self.personalized else set())
        for i, name in enumerate(self.stratify_by):
            if name not in known:
                p.append(f"stratify_by[{i}]: {name!r} is not a declared factor (known: "
                         f"{sorted(known)}; 'cluster' only with personalization)")
        if self.personalized and "cluster" not in self.stratify_by:
            # Module weights are defined relative to the stratum's cluster.
            p.append("stratify_by: a personalized design must include 'cluster' "
                     "(module weights depend on it)")
        keys = [f.key for f in self.factors]
        if len(set(keys)) != len(keys):
            p.append("factors: duplicate keys")
        if "site" in self.stratify_by and not self.sites:
            p.append("sites: stratifying by site needs the list of sites")
        if self.site.codes is not None:
            if self.site.field is None:
                p.append("site.codes: only with site.field (a REDCap choice field)")
            unknown = sorted(set(self.site.codes.values()) - set(self.sites))
            if unknown:
                p.append(f"site.codes: {unknown} are not sites (known: {self.sites})")
        needs_blocks = self.method in ("permuted_blocks", "group")
        if needs_blocks and not self.block_lengths:
            p.append(f"block_lengths: method {self.method!r} needs block lengths")
        if self.method == "minimization":
            if self.minimization is None:
                p.append("minimization: method 'minimization' needs this section "
                         "(p_preferred, measure)")
            if not self.stratify_by:
                p.append("stratify_by: minimization needs at least one factor")
            if self.personalized:
                p.append("method: minimization is not combined with personalization")
        elif self.minimization is not None:
            p.append(f"minimization: only for method 'minimization' (method is {self.method!r})")
        if self.method == "group" and self.group is None:
            p.append("group: method 'group' needs this section (group_field)")
        elif self.method != "group" and self.group is not None:
            p.append(f"group: only for method 'group' (method is {self.method!r})")
        if self.method == "group" and self.personalized:
            p.append("method: group randomization is not combined with personalization")
        stage_keys = [s.key for s in self.stages]
        if len(set(stage_keys)) != len(stage_keys):
            p.append("stages: duplicate keys")
        # A stage is balanced on its own; with a first-stage cluster it would unblind.
        if self.stages and self.personalized:
            p.append("stages: multi-stage designs are not combined with personalization")
        if self.low_slots_threshold and self.low_slots_alarm_batch >= self.low_slots_threshold:
            # A stratum may use a whole batch of slots between two looks: with a batch at or
            # above the threshold it could run out before the alarm is ever raised.
            p.append(f"low_slots_alarm_batch ({self.low_slots_alarm_batch}) must be "
                     f"below low_slots_threshold ({self.low_slots_threshold})")
        return p

    def levels_of(self, factor: str, clusters: list[str]) -> tuple[str, ...]:
        """The levels of a factor named in `stratify_by`."""
        if factor == "site":
            return tuple(self.sites)
        if factor == "cluster":
            return tuple(clusters)
        return self.factor_by_key[factor].level_keys
