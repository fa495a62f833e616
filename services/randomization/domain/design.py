"""The list design derived from the protocol: strata, module weights, arms, block lengths.

A stratum is a cluster, or a cluster at a site; its key is `DYS` or `DYS|site-a`. Within a
stratum every module has a weight by its relation to the stratum's cluster (matching or not),
and a slot's arm follows from the same relation. For PerPAIN that is 2:1:1 over (matching,
non-matching A, non-matching B), so every block length is a multiple of 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .errors import DesignError, NotInDesignError

if TYPE_CHECKING:
    from services.core.protocol import Cluster, RandomizationDesign, TrialProtocol

SEPARATOR = "|"


def stratum_key(cluster: str, site: str | None = None) -> str:
    """`DYS` or `DYS|site-a`: the cluster always comes first."""
    return cluster if site is None else f"{cluster}{SEPARATOR}{site}"


@dataclass(frozen=True)
class StratumDesign:
    key: str
    cluster: str
    site: str | None
    matching_module: str
    weights: tuple[tuple[str, int], ...]  # (module, weight): matching first, then protocol order
    arms: tuple[tuple[str, str], ...]  # (module, arm)

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
    _by_key: dict[str, StratumDesign] = field(default_factory=dict, init=False, repr=False,
                                            compare=False)

    def __post_init__(self) -> None:
        self._by_key.update({s.key: s for s in self.strata})

    @property
    def by_site(self) -> bool:
        return bool(self.sites)

    @cached_property
    def stratum_keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.strata)

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

    def matching_module(self, cluster: str) -> str:
        """The module matching a cluster: what a pilot (QA) participant receives, no slot used."""
        self._check_cluster(cluster)
        return next(s.matching_module for s in self.strata if s.cluster == cluster)


def build_design(randomization: RandomizationDesign, clusters: Sequence[Cluster],
                 modules: Sequence[str]) -> ListDesign:
    """A list design from the protocol's randomization section, clusters and module keys."""
    r = randomization
    if not clusters:
        raise DesignError("the protocol has no clusters", field="clusters")
    if "cluster" not in r.stratify_by:
        raise DesignError("stratification must include cluster", field="randomization.stratify_by")
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
        arms = tuple((m, r.arm_of.matching if m == c.matching_module
                      else r.arm_of.non_matching) for m in order)
        for site in sites or (None,):
            strata.append(StratumDesign(stratum_key(c.key, site), c.key, site,
                                        c.matching_module, weights, arms))
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
    )
    unit = design.strata[0].unit
    for j, b in enumerate(design.block_lengths):
        if b % unit:
            raise DesignError(f"{b} is not a multiple of {unit}, the sum of the module weights",
                              field=f"randomization.block_lengths[{j}]")
    return design


def design_from_protocol(protocol: TrialProtocol) -> ListDesign:
    return build_design(protocol.randomization, protocol.clusters, protocol.module_keys)
