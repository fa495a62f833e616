"""Design properties a seed trial's demo checks (pure functions over what it collected).

- permuted blocks: within every stratum the arms' counts stay within half the longest
  block of the ratio (whole blocks hold it exactly);
- minimization: the largest marginal imbalance (over every level of every factor) of the
  allocations made, against the mean of simple randomization on the same cohort;
- either: how often an observer who knows every past assignment guesses the next one,
  against the method's theoretical rate (within four sampling sds bounded from n).
- later stages (SMART): every participant allocated at each stage they reached and none at
  a stage they did not, by the rule's decision, and block balance per stage stratum.
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
from sim.smart_cohort import StageVisit

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


# ── later stages (SMART) ──────────────────────────────────────────────────────────────


def check_stages(verdict: Verdict, protocol: TrialProtocol, visits: Sequence[StageVisit],
                 in_redcap: Mapping[str, Mapping[str, str]], service: Sequence[Mapping],
                 first_arm: Mapping[str, str]) -> None:
    """Every participant who reached the stage is allocated there once, nobody else; REDCap
    matches the service; each option is one of their outcome's; the outcome is the rule's."""
    stage = protocol.randomization.stages[0]
    expected = {v.record for v in visits if v.expects_stage}
    got = set(in_redcap)
    verdict.check(got == expected,
                  f"stage {stage.key}: every participant who reached it ({len(expected)}) is "
                  f"allocated in REDCap and nobody else ({len(got - expected)} unexpected, "
                  f"{len(expected - got)} missing)")
    not_reached = Counter(v.story for v in visits if not v.expects_stage and v.record in got)
    verdict.check(not not_reached, f"stage {stage.key}: none for the withdrawn, the missed "
                                   f"visit or anyone without a first-stage allocation "
                                   f"({dict(not_reached) or 'none'})")
    per_record = Counter(a["record"] for a in service if a["stage"] == stage.key)
    verdict.check(set(per_record) == expected and all(n == 1 for n in per_record.values()),
                  f"stage {stage.key}: the randomization service holds exactly one allocation "
                  "per participant who reached it")
    by_record = {a["record"]: a for a in service if a["stage"] == stage.key}
    mismatched = [r for r, row in in_redcap.items()
                  if r not in by_record
                  or by_record[r]["option"] != row.get(stage.option_field)
                  or by_record[r]["stage_number"] != row.get(stage.number_field)]
    verdict.check(not mismatched, f"stage {stage.key}: REDCap's number and option match the "
                                  f"service for every participant ({len(mismatched)} mismatches)")
    options = {"responders": {o.key for o in stage.responders},
               "non_responders": {o.key for o in stage.non_responders}}
    wanted = {v.record: v.outcome for v in visits if v.expects_stage}
    wrong_outcome = [r for r, a in by_record.items() if a["outcome"] != wanted.get(r)]
    verdict.check(not wrong_outcome, f"stage {stage.key}: every decision is the rule's "
                                     f"(≥ {stage.rule.min_reduction:.0%} fall from baseline, "
                                     f"the boundary a response; {len(wrong_outcome)} wrong)")
    wrong_option = [r for r, a in by_record.items() if a["option"] not in options[a["outcome"]]]
    verdict.check(not wrong_option, f"stage {stage.key}: responders and non-responders get only "
                                    f"their own options ({len(wrong_option)} wrong)")
    wrong_arm = [r for r, a in by_record.items() if a["first_arm"] != first_arm.get(r)]
    verdict.check(not wrong_arm, f"stage {stage.key}: each stage stratum follows the "
                                 f"participant's first-stage arm ({len(wrong_arm)} wrong)")
    numbers = [a["stage_number"] for a in by_record.values()]
    verdict.check(len(numbers) == len(set(numbers)), f"stage {stage.key}: numbers are unique")


def check_stage_blocks(verdict: Verdict, protocol: TrialProtocol,
                       balance: Sequence[Mapping]) -> None:
    """Within each stage stratum the options stay within half the stage's longest block."""
    for stage in protocol.randomization.stages:
        allowed = max(stage.block_lengths) / 2
        for row in (b for b in balance if b["stage"] == stage.key):
            gap = max((abs(row["by_option"][o] - row["expected"][o]) for o in row["by_option"]),
                      default=0.0)
            verdict.check(gap <= allowed, f"stage stratum {row['stratum']}: {row['by_option']} "
                                          f"within ±{allowed:g} of the ratio (off by {gap:g})")
