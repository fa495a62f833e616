"""Minimization (Pocock–Simon) with a random element, reproducible from a sealed seed.

For each arm the next participant could join, the imbalance that would follow is computed
over the participant's own level of every declared factor: the arms' counts at that level,
each divided by the arm's ratio share, summarised as a range (max − min) or a variance, and
weighted by the factor's weight. The arms with the smallest total are preferred; the
participant joins a preferred arm with probability `p_preferred` and one of the others
otherwise (ties, and the choice within a set, follow the allocation ratio).

The random element is what is sealed: participant n's draws come from block n of the
seed's keyed stream (stream.py), so the whole sequence of decisions can be replayed from
the seed and the cohort, and nobody without the seed can tell which way a draw will fall.
Every decision keeps its imbalance scores for the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from .errors import DesignError
from .stream import BlockStream, stratum_secret

Draw = Callable[[int], int]  # uniform on 0..n-1
# p_preferred is applied with this resolution: a draw below p·SCALE follows the preference.
P_SCALE = 1_000_000
_STREAM = "minimization"


@dataclass(frozen=True)
class Factor:
    name: str
    weight: float
    levels: tuple[str, ...]


@dataclass(frozen=True)
class MinimizationDesign:
    arms: tuple[str, ...]
    ratio: tuple[int, ...]
    factors: tuple[Factor, ...]
    p_preferred: float
    measure: Literal["range", "variance"] = "range"

    def __post_init__(self) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise DesignError("minimization needs two or more distinct arms", field="arms")
        if len(self.ratio) != len(self.arms) or any(r <= 0 for r in self.ratio):
            raise DesignError("one positive ratio per arm is needed", field="ratio")
        if not self.factors:
            raise DesignError("minimization needs at least one factor", field="factors")
        for f in self.factors:
            if f.weight <= 0 or not f.levels or len(set(f.levels)) != len(f.levels):
                raise DesignError(f"factor {f.name!r} needs a positive weight and distinct "
                                  "levels", field=f"factors.{f.name}")
        if not 0.5 <= self.p_preferred <= 1:
            raise DesignError("p_preferred must lie in [0.5, 1]", field="p_preferred")


@dataclass
class Marginals:
    """Counts per (factor, level) per arm: all that minimization needs of the past."""

    design: MinimizationDesign
    counts: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def of(self, factor: str, level: str) -> list[int]:
        return self.counts.get((factor, level), [0] * len(self.design.arms))

    def add(self, levels: Mapping[str, str], arm: str) -> None:
        i = self.design.arms.index(arm)
        for f in self.design.factors:
            row = self.counts.setdefault((f.name, levels[f.name]), [0] * len(self.design.arms))
            row[i] += 1


@dataclass(frozen=True)
class Decision:
    arm: str
    scores: dict[str, float]  # total weighted imbalance if the participant joined each arm
    preferred: tuple[str, ...]
    followed_preference: bool


def check_levels(design: MinimizationDesign, levels: Mapping[str, str]) -> None:
    for f in design.factors:
        if f.name not in levels:
            raise DesignError(f"factor {f.name!r} has no value", field=f.name)
        if levels[f.name] not in f.levels:
            raise DesignError(f"{levels[f.name]!r} is not a level of {f.name!r} "
                              f"({', '.join(f.levels)})", field=f.name)


def _spread(values: Sequence[float], measure: str) -> float:
    if measure == "range":
        return max(values) - min(values)
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def imbalance_scores(design: MinimizationDesign, marginals: Marginals,
                     levels: Mapping[str, str]) -> dict[str, float]:
    """The weighted imbalance after a hypothetical allocation to each arm."""
    check_levels(design, levels)
    scores: dict[str, float] = {}
    for a, arm in enumerate(design.arms):
        total = 0.0
        for f in design.factors:
            row = list(marginals.of(f.name, levels[f.name]))
            row[a] += 1
            shares = [n / r for n, r in zip(row, design.ratio, strict=True)]
            total += f.weight * _spread(shares, design.measure)
        scores[arm] = total
    return scores


def _by_ratio(design: MinimizationDesign, candidates: Sequence[str], draw: Draw) -> str:
    weights = [design.ratio[design.arms.index(a)] for a in candidates]
    pick = draw(sum(weights))
    for arm, w in zip(candidates, weights, strict=True):
        if pick < w:
            return arm
        pick -= w
    raise AssertionError("unreachable: the draw is below the sum of weights")


def decide(design: MinimizationDesign, marginals: Marginals, levels: Mapping[str, str],
           draw: Draw) -> Decision:
    scores = imbalance_scores(design, marginals, levels)
    best = min(scores.values())
    # Scores are sums of a few ratios of small integers: compare with a tolerance.
    preferred = tuple(a for a in design.arms if scores[a] - best < 1e-9)
    if len(preferred) == len(design.arms):
        return Decision(_by_ratio(design, design.arms, draw), scores, preferred, True)
    follow = draw(P_SCALE) < round(design.p_preferred * P_SCALE)
    pool = preferred if follow else tuple(a for a in design.arms if a not in preferred)
    return Decision(_by_ratio(design, pool, draw), scores, preferred, follow)


def draws_for(seed: bytes, n: int) -> Draw:
    """The sealed draws of the trial's n-th minimization decision (n from 1)."""
    return BlockStream(stratum_secret(seed, _STREAM), n).below


def replay(design: MinimizationDesign, seed: bytes,
           cohort: Sequence[Mapping[str, str]]) -> list[Decision]:
    """Every decision for a cohort in allocation order: what an auditor recomputes."""
    marginals = Marginals(design)
    decisions = []
    for n, levels in enumerate(cohort, start=1):
        decision = decide(design, marginals, levels, draws_for(seed, n))
        marginals.add(levels, decision.arm)
        decisions.append(decision)
    return decisions


def next_decision(design: MinimizationDesign, seed: bytes, n: int,
                  past: Sequence[tuple[Mapping[str, str], str]],
                  levels: Mapping[str, str]) -> Decision:
    """The trial's n-th decision, given every earlier participant's levels and arm (in any
    order: only the marginal counts matter) — what the service computes under its lock."""
    marginals = Marginals(design)
    for their_levels, arm in past:
        marginals.add(their_levels, arm)
    return decide(design, marginals, levels, draws_for(seed, n))


def marginal_imbalance(design: MinimizationDesign,
                       allocations: Sequence[tuple[Mapping[str, str], str]]) -> float:
    """The largest range of ratio-scaled arm counts over every factor level: the figure
    minimization keeps small (0 = perfectly balanced at every level)."""
    marginals = Marginals(design)
    for levels, arm in allocations:
        marginals.add(levels, arm)
    worst = 0.0
    for f in design.factors:
        for level in f.levels:
            shares = [c / r for c, r in zip(marginals.of(f.name, level), design.ratio,
                                            strict=True)]
            worst = max(worst, max(shares) - min(shares))
    return worst
