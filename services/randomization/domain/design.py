"""The list design derived from the protocol: strata, weights, arms, block lengths.

A stratum is one level of each stratification factor, in the protocol's `stratify_by`
order, joined by `|`: `DYS`, `DYS|site-a`, `site-a|high` (one stratum `all` without
factors). In a personalized design (PerPAIN) the cluster comes first; within a stratum every
module has a weight by its relation to the stratum's cluster (matching or not), and a slot's
arm follows from the same relation: 2:1:1 over (matching, non-matching A, non-matching B),
so every block length is a multiple of 4. Otherwise a slot's treatment is its arm's (the
arm's one module, else the arm itself) and the weights are the arms' ratios. A group design
(`method: group`) is such a design whose slots are group slots: each is taken by a whole
pre-formed group when it is closed (domain/group.py).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .errors import DesignError, NotInDesignError
from .group import GroupDesign
from .minimization import Factor as MinimizationFactor
from .minimization import MinimizationDesign
from .stages import StageDesign, stage_design

if TYPE_CHECKING:
    from services.core.protocol import Arm, Cluster, RandomizationDesign, TrialProtocol

SEPARATOR = "|"
SINGLE_STRATUM = "all"  # the key of the one stratum of an unstratified design


def stratum_key(cluster: str, site: str | None = None) -> str:
    """`DYS` or `DYS|site-a`: the cluster always comes first."""
    return cluster if site is None else f"{cluster}{SEPARATOR}{site}"


@dataclass(frozen=True)
class StratumDesign:
    key: str
    cluster: str | None  # None unless personalized
    site: str | None
    matching_module: str | None  # None unless personalized
    weights: tuple[tuple[str, int], ...]  # (module, weight): matching first, then protocol order
    arms: tuple[tuple[str, str], ...]  # (module, arm)
    levels: tuple[tuple[str, str], ...] = ()  # (factor, level) in stratify_by order

    @property
    def unit(self) -> int:
        """Sum of the weights: the smallest block that holds the exact ratio."""
        return sum(w for _, w in self.weights)

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.weights)

    def arm_of(self, module: str) -> str:
        for m, arm in self.arms:
            if m == module:
                return arm
        raise NotInDesignError(
            f"{module!r} is not a module of stratum {self.key}", field="module")

    def expected_counts(self, block_length: int) -> dict[str, int]:
        """How often each module occurs in a complete block of this length."""
        if block_length % self.unit:
            raise DesignError(
                f"block length {block_length} is not a multiple of {self.unit}",
                field="block_length")
        k = block_length // self.unit
        return {m: w * k for m, w in self.weights}

    def block_pattern(self, block_length: int) -> list[str]:
        """The block's modules in a fixed (unshuffled) order."""
        return [m for m, n in self.expected_counts(block_length).items() for _ in range(n)]


@dataclass(frozen=True)
class ListDesign:
    strata: tuple[StratumDesign, ...]  # sorted by key, the canonical order
    block_lengths: tuple[int, ...]
    modules: tuple[str, ...]
    arms: tuple[str, ...]
    clusters: tuple[str, ...]
    sites: tuple[str, ...]  # empty unless stratified by site
    low_slots_threshold: int
    initial_slots_per_stratum: int | None = None
    low_slots_alarm_batch: int = 1
    factors: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (factor, its levels), in order
    personalized: bool = True
    # Minimization has no slots: its sealed element is the seed's draws.
    minimization: MinimizationDesign | None = None
    # SMART: later stages, each with its own strata (outcome × first-stage arm) in this list.
    stages: tuple[StageDesign, ...] = ()
    stage_strata: tuple[StratumDesign, ...] = ()
    # Group randomization: the slots are group slots; members inherit their group's arm.
    group: GroupDesign | None = None
    _by_key: dict[str, StratumDesign] = field(default_factory=dict, init=False, repr=False,
                                            compare=False)

    def __post_init__(self) -> None:
        self._by_key.update({s.key: s for s in (*self.strata, *self.stage_strata)})

    @property
    def by_site(self) -> bool:
        return bool(self.sites)

    @cached_property
    def stratum_keys(self) -> tuple[str, ...]:
        """Every stratum holding slots: the first stage's, then the later stages'."""
        return tuple(s.key for s in (*self.strata, *self.stage_strata))

    def block_lengths_of(self, key: str) -> tuple[int, ...]:
        """A stage stratum draws its blocks from its stage's lengths."""
        for stage in self.stages:
            if key.startswith(f"{stage.key}:"):
                return stage.block_lengths
        return self.block_lengths

    def stage(self, key: str) -> StageDesign:
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise NotInDesignError(f"{key!r} is not a stage of this design", field="stage")

    def stratum(self, key: str) -> StratumDesign:
        try:
            return self._by_key[key]
        except KeyError:
            raise NotInDesignError(
                f"{key!r} is not a stratum of this design (known: {', '.join(self._by_key)})",
                field="stratum") from None

    def _check_cluster(self, cluster: str) -> None:
        if cluster not in self.clusters:
            raise NotInDesignError(
                f"{cluster!r} is not a cluster (known: {', '.join(self.clusters)})",
                field="cluster")

    def stratum_for(self, cluster: str, site: str | None = None) -> StratumDesign:
        """The stratum of a participant of `cluster` (at `site` when stratified by site).

        Without site stratification a given site is ignored.
        """
        self._check_cluster(cluster)
        if self.by_site:
            if site is None:
                raise NotInDesignError(
                    "the list is stratified by site: the participant's site is required",
                    field="site")
            if site not in self.sites:
                raise NotInDesignError(
                    f"{site!r} is not a site (known: {', '.join(self.sites)})", field="site")
            return self._by_key[stratum_key(cluster, site)]
        return self._by_key[stratum_key(cluster)]

    def stratum_for_levels(self, levels: Mapping[str, str | None]) -> StratumDesign:
        """The stratum of a participant with these factor levels (extra ones are ignored)."""
        parts: list[str] = []
        for name, allowed in self.factors:
            value = levels.get(name)
            if value is None:
                raise NotInDesignError(
                    f"the list is stratified by {name}: the participant's {name} is required",
                    field=name)
            if value not in allowed:
                raise NotInDesignError(
                    f"{value!r} is not a level of {name} (known: {', '.join(allowed)})",
                    field=name)
            parts.append(value)
        return self._by_key[SEPARATOR.join(parts) or SINGLE_STRATUM]

    def matching_module(self, cluster: str) -> str:
        """The module matching a cluster: what a pilot (QA) participant receives, no slot used."""
        self._check_cluster(cluster)
        return next(s.matching_module for s in self.strata
                    if s.cluster == cluster and s.matching_module is not None)


def treatment_of(arm: Arm) -> str:
    """What a slot of a non-personalized arm allocates: its one module, else the arm."""
    return arm.modules[0] if len(arm.modules) == 1 else arm.key


def treatment_for(design: ListDesign, arm: str) -> str:
    """The treatment (module) a non-personalized design allocates to `arm`."""
    return design.modules[design.arms.index(arm)]


def build_design(randomization: RandomizationDesign, clusters: Sequence[Cluster],
                 modules: Sequence[str], arms: Sequence[Arm] = ()) -> ListDesign:
    """A list design from the protocol's randomization section, clusters, module keys and
    (for a design without personalization) its arms."""
    r = randomization
    # Later stages follow a first stage whose participants hold a slot and an arm.
    if r.stages and (r.method != "permuted_blocks" or r.module_weights is not None):
        raise DesignError("later stages (SMART) follow a first stage of permuted blocks "
                          "without personalization", field="randomization.stages")
    if r.method == "minimization":
        return _minimization_design(r, arms)
    if r.method == "group":
        return _group_design(r, arms)
    if r.module_weights is None or r.arm_of is None:
        return _with_stages(_plain_design(r, arms), r)
    if not clusters:
        raise DesignError("the protocol has no clusters", field="clusters")
    if "cluster" not in r.stratify_by:
        raise DesignError("stratification must include cluster", field="randomization.stratify_by")
    if r.stratify_by[0] != "cluster" or any(f not in ("cluster", "site") for f in r.stratify_by):
        raise DesignError("a personalized design stratifies by cluster, then optionally site",
                          field="randomization.stratify_by")
    sites = tuple(r.sites) if "site" in r.stratify_by else ()
    if "site" in r.stratify_by and not sites:
        raise DesignError("stratifying by site needs the list of sites",
                          field="randomization.sites")
    strata: list[StratumDesign] = []
    for i, c in enumerate(clusters):
        if c.matching_module not in modules:
            raise DesignError(f"{c.matching_module!r} is not a module",
                              field=f"clusters[{i}].matching_module")
        order = [c.matching_module, *(m for m in modules if m != c.matching_module)]
        weights = tuple((m, r.module_weights.matching if m == c.matching_module
                         else r.module_weights.non_matching) for m in order)
        arm_rule = tuple((m, r.arm_of.matching if m == c.matching_module
                          else r.arm_of.non_matching) for m in order)
        for site in sites or (None,):
            levels = (("cluster", c.key),) + ((("site", site),) if site is not None else ())
            strata.append(StratumDesign(stratum_key(c.key, site), c.key, site,
                                        c.matching_module, weights, arm_rule, levels))
    factors = (("cluster", tuple(c.key for c in clusters)),) + (
        (("site", sites),) if sites else ())
    design = ListDesign(
        strata=tuple(sorted(strata, key=lambda s: s.key)),
        block_lengths=tuple(sorted(r.block_lengths)),
        modules=tuple(modules),
        arms=tuple(dict.fromkeys((r.arm_of.matching, r.arm_of.non_matching))),
        clusters=tuple(c.key for c in clusters),
        sites=sites,
        low_slots_threshold=r.low_slots_threshold,
        initial_slots_per_stratum=r.initial_slots_per_stratum,
        low_slots_alarm_batch=r.low_slots_alarm_batch,
        factors=factors,
    )
    _check_blocks(design, "the sum of the module weights")
    return design


def _plain_design(r: RandomizationDesign, arms: Sequence[Arm]) -> ListDesign:
    """Strata = product of the factors' levels; within each, the arms by their ratios."""
    if len(arms) < 2:
        raise DesignError("a design without personalization randomizes two or more arms",
                          field="arms")
    if not r.block_lengths:
        raise DesignError("permuted blocks need block lengths", field="randomization.block_lengths")
    treatments = [treatment_of(a) for a in arms]
    if len(set(treatments)) != len(treatments):
        raise DesignError("two arms allocate the same treatment", field="arms")
    weights = tuple((t, a.ratio) for t, a in zip(treatments, arms, strict=True))
    arm_rule = tuple((t, a.key) for t, a in zip(treatments, arms, strict=True))
    factors = _factor_levels(r)
    design = ListDesign(
        strata=_product_strata(factors, weights, arm_rule),
        block_lengths=tuple(sorted(r.block_lengths)),
        modules=tuple(treatments),
        arms=tuple(a.key for a in arms),
        clusters=(),
        sites=tuple(r.sites) if "site" in r.stratify_by else (),
        low_slots_threshold=r.low_slots_threshold,
        initial_slots_per_stratum=r.initial_slots_per_stratum,
        low_slots_alarm_batch=r.low_slots_alarm_batch,
        factors=factors,
        personalized=False,
    )
    _check_blocks(design, "the sum of the arms' ratios")
    return design


def _with_stages(design: ListDesign, r: RandomizationDesign) -> ListDesign:
    """The design with each stage's strata: one per outcome and first-stage arm."""
    if not r.stages:
        return design
    stages = tuple(stage_design(s, design.arms) for s in r.stages)
    strata = []
    for stage in stages:
        for outcome, weights in stage.options:
            rule = tuple((o, o) for o, _ in weights)  # a slot's module and arm: the option
            for arm in stage.after_arms:
                key = stage.stratum_key(outcome, arm)
                strata.append(StratumDesign(key, None, None, None, weights, rule,
                                            (("stage", stage.key), ("outcome", outcome),
                                             ("arm", arm))))
    for i, stage in enumerate(stages):
        for outcome, weights in stage.options:
            unit = sum(w for _, w in weights)
            for j, b in enumerate(stage.block_lengths):
                if b % unit:
                    raise DesignError(f"{b} is not a multiple of {unit}, the sum of the "
                                      f"{outcome}' ratios",
                                      field=f"randomization.stages[{i}].block_lengths[{j}]")
    return dataclasses.replace(design, stages=stages,
                   stage_strata=tuple(sorted(strata, key=lambda s: s.key)))


def _group_design(r: RandomizationDesign, arms: Sequence[Arm]) -> ListDesign:
    """Permuted blocks as in a plain design, over group slots: each slot is one group."""
    if r.group is None:
        raise DesignError("method 'group' needs its section", field="randomization.group")
    plain = _plain_design(r, arms)
    return dataclasses.replace(plain, group=GroupDesign(
        r.group.group_field, r.group.min_group_size, r.group.max_group_size))


def _factor_levels(r: RandomizationDesign) -> tuple[tuple[str, tuple[str, ...]], ...]:
    factors = tuple((name, r.levels_of(name, [])) for name in r.stratify_by)
    for name, levels in factors:
        if not levels:
            raise DesignError(f"factor {name!r} has no levels", field="randomization.stratify_by")
    return factors


def _product_strata(factors: tuple[tuple[str, tuple[str, ...]], ...],
                    weights: tuple[tuple[str, int], ...],
                    arm_rule: tuple[tuple[str, str], ...]) -> tuple[StratumDesign, ...]:
    strata = []
    for combo in itertools.product(*(levels for _, levels in factors)):
        named = dict(zip((n for n, _ in factors), combo, strict=True))
        strata.append(StratumDesign(SEPARATOR.join(combo) or SINGLE_STRATUM, None,
                                    named.get("site"), None, weights, arm_rule,
                                    tuple(named.items())))
    return tuple(sorted(strata, key=lambda s: s.key))


def _minimization_design(r: RandomizationDesign, arms: Sequence[Arm]) -> ListDesign:
    if r.minimization is None:
        raise DesignError("method 'minimization' needs its section",
                          field="randomization.minimization")
    if len(arms) < 2:
        raise DesignError("minimization randomizes two or more arms", field="arms")
    weight = {"site": r.minimization.site_weight, "cluster": r.minimization.cluster_weight}
    factors = _factor_levels(r)
    treatments = tuple(treatment_of(a) for a in arms)
    minimization = MinimizationDesign(
        arms=tuple(a.key for a in arms), ratio=tuple(a.ratio for a in arms),
        factors=tuple(MinimizationFactor(name, weight.get(name) or r.factor_by_key[name].weight,
                                         levels) for name, levels in factors),
        p_preferred=r.minimization.p_preferred, measure=r.minimization.measure)
    # Its strata (the level combinations) only group the balance report: no slots, no list.
    strata = _product_strata(factors, tuple((t, a.ratio) for t, a in zip(treatments, arms,
                                                                           strict=True)),
                             tuple((t, a.key) for t, a in zip(treatments, arms, strict=True)))
    return ListDesign(
        strata=strata, block_lengths=(), modules=treatments,
        arms=tuple(a.key for a in arms), clusters=(),
        sites=tuple(r.sites) if "site" in r.stratify_by else (), low_slots_threshold=0,
        initial_slots_per_stratum=None, low_slots_alarm_batch=r.low_slots_alarm_batch,
        factors=factors, personalized=False, minimization=minimization)


def _check_blocks(design: ListDesign, what: str) -> None:
    unit = design.strata[0].unit
    for j, b in enumerate(design.block_lengths):
        if b % unit:
            raise DesignError(f"{b} is not a multiple of {unit}, {what}",
                              field=f"randomization.block_lengths[{j}]")


def design_from_protocol(protocol: TrialProtocol) -> ListDesign:
    return build_design(protocol.randomization, protocol.clusters, protocol.module_keys,
                        protocol.arms)
