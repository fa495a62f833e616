"""Design properties a seed trial's demo checks (pure functions over what it collected).

- permuted blocks: within every stratum the arms' counts stay within half the longest
  block of the ratio (whole blocks hold it exactly);
- minimization: the largest marginal imbalance (over every level of every factor) of the
  allocations made, against the mean of simple randomization on the same cohort;
- either: how often an observer who knows every past assignment guesses the next one,
  against the method's theoretical rate (within four sampling sds bounded from n).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.core.protocol import TrialProtocol
from services.randomization.domain import design_from_protocol
from services.randomization.domain.baseline import levels_of
from services.randomization.domain.minimization import marginal_imbalance
from services.randomization.domain.predictability import (
    Guessability,
    blocks_guessability,
    minimization_guessability,
)

from .checks import Verdict


@dataclass(frozen=True)
class BlockBalance:
    stratum: str
    by_arm: dict[str, int]
    worst_gap: float  # largest |count - n * ratio share| over the arms
    allowed: float


def block_balance(protocol: TrialProtocol, balance: Sequence[Mapping]) -> list[BlockBalance]:
    """From the unblinded balance report's strata (`by_arm` per stratum)."""
    arms = protocol.arms
    unit = sum(a.ratio for a in arms)
    allowed = max(protocol.randomization.block_lengths) / 2
    out = []
    for row in balance:
        by_arm = {a.key: int(row["by_arm"].get(a.key, 0)) for a in arms}
        n = sum(by_arm.values())
        gap = max(abs(by_arm[a.key] - n * a.ratio / unit) for a in arms)
        out.append(BlockBalance(row["stratum"], by_arm, gap, allowed))
    return out


def check_blocks(verdict: Verdict, rows: list[BlockBalance]) -> None:
    for b in rows:
        verdict.check(b.worst_gap <= b.allowed,
                      f"stratum {b.stratum}: {b.by_arm} within ±{b.allowed:g} of the ratio "
                      f"(off by {b.worst_gap:g})")


@dataclass(frozen=True)
class MinimizationFigures:
    minimized: float
    simple_mean: float
    simple_runs: int
    participants: int


def minimization_figures(protocol: TrialProtocol, fields_by_record: Mapping[str, Mapping[str, str]],
                         arm_by_record: Mapping[str, str], *, runs: int = 500,
                         seed: int = 460) -> MinimizationFigures:
    """The imbalance minimization achieved, and simple randomization's mean over `runs`
    draws for the same participants (same levels, arms drawn by the ratio)."""
    design = design_from_protocol(protocol).minimization
    if design is None:
        raise ValueError("not a minimization design")
    cohort = [(levels_of(protocol, fields_by_record[r]), arm_by_record[r])
              for r in sorted(arm_by_record)]
    minimized = marginal_imbalance(design, cohort)
    rng = random.Random(seed)
    weights = list(design.ratio)
    simple = [marginal_imbalance(design, [(levels, rng.choices(design.arms, weights)[0])
                                          for levels, _ in cohort]) for _ in range(runs)]
    return MinimizationFigures(minimized, sum(simple) / runs, runs, len(cohort))


def check_minimization(verdict: Verdict, m: MinimizationFigures) -> None:
    verdict.check(m.minimized < m.simple_mean,
                  f"minimization's largest marginal imbalance {m.minimized:g} is below simple "
                  f"randomization's mean {m.simple_mean:.2f} on the same {m.participants} "
                  f"participants ({m.simple_runs} simple draws)")


def arms_by_level(protocol: TrialProtocol, fields_by_record: Mapping[str, Mapping[str, str]],
                  arm_by_record: Mapping[str, str]) -> dict[tuple[str, str], Counter[str]]:
    """(factor, level) → arm counts: the table the demo prints."""
    table: dict[tuple[str, str], Counter[str]] = {}
    for record, arm in arm_by_record.items():
        for factor, level in levels_of(protocol, fields_by_record[record]).items():
            table.setdefault((factor, level), Counter())[arm] += 1
    return table


def guessability(protocol: TrialProtocol, fields_by_record: Mapping[str, Mapping[str, str]],
                 arm_by_record: Mapping[str, str], order: Sequence[str]) -> Guessability:
    """The observer's figure on the allocations made, `order` being the records in
    allocation order (by allocation number): per stratum for blocks, trial-wide for
    minimization (whose observer also knows each participant's levels)."""
    design = design_from_protocol(protocol)
    levels = {r: levels_of(protocol, fields_by_record[r]) for r in order}
    method = f"{protocol.trial.id} {protocol.randomization.method}"
    if design.minimization is not None:
        return minimization_guessability(method, design.minimization,
                                         [(levels[r], arm_by_record[r]) for r in order])
    sequences: dict[str, list[str]] = {}
    for r in order:
        key = design.stratum_for_levels(levels[r]).key
        sequences.setdefault(key, []).append(arm_by_record[r])
    return blocks_guessability(method, [a.ratio for a in protocol.arms], design.block_lengths,
                               design.arms, list(sequences.values()))


def check_guessability(verdict: Verdict, g: Guessability) -> None:
    verdict.check(g.within(), f"{g.line()}: within 4 sds of the theory")
