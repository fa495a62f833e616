"""A synthetic cohort for a group-randomized seed trial (iact-mmrp): people screened for
pre-formed rehabilitation groups, each with the group the clinic put them in, and the
follow-ups each allocated participant still answers under heavy attrition.

The people and their baseline forms are the seed cohort's (sim/seed_cohort.py); this adds
the group field and the attrition. Groups hold 3 to 7 participants who complete the
baseline (the seed: 122 patients in 24 groups, about 5 a group); the withdrawn and the
ineligible were scheduled into groups too, but never join one. One participant completes
the baseline only after their group was randomized (`late`): held for review, never
allocated by themselves. Attrition follows the seed, each share of those still in: 25%
lost by post-treatment, 35% of the rest by post-aftercare, 29% of the rest by 1 year.
Labelled synthetic: no real person is here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from services.core.protocol import TrialProtocol

from .cohort import Participant
from .seed_cohort import make_seed_cohort

# Share of those still in who are lost by each follow-up, in timepoint order (the seed).
ATTRITION = (0.25, 0.35, 0.29)
MIN_SIZE, MAX_SIZE = 3, 7


@dataclass
class GroupCohort:
    people: list[Participant]
    groups: dict[str, list[str]]  # group id → records of its allocating members, in order
    late: dict[str, str]  # record → the group it joins after its close
    followups: dict[str, list[str]]  # allocated record → follow-up timepoints it answers


def _sizes(rng: random.Random, total: int) -> list[int]:
    """Group sizes of 3..7 that add up to `total` (at least 3)."""
    sizes: list[int] = []
    left = total
    while left > MAX_SIZE:
        size = rng.randint(MIN_SIZE, min(MAX_SIZE, left - MIN_SIZE))
        sizes.append(size)
        left -= size
    sizes.append(left)
    return sizes


def make_group_cohort(protocol: TrialProtocol, *, eligible: int, ineligible: int = 4,
                      withdrawn: int = 3, seed: int = 15) -> GroupCohort:
    group = protocol.randomization.group
    if group is None:
        raise ValueError("not a group-randomized protocol")
    rng = random.Random(seed)
    people = make_seed_cohort(protocol, eligible=eligible, ineligible=ineligible,
                              withdrawn=withdrawn, seed=seed)
    joining = [p for p in people if p.expects_allocation]
    late_one = joining.pop(rng.randrange(len(joining)))
    groups: dict[str, list[str]] = {}
    start = 0
    for n, size in enumerate(_sizes(rng, len(joining)), start=1):
        groups[f"G{n:02d}"] = [p.record for p in joining[start:start + size]]
        start += size
    where = {r: g for g, members in groups.items() for r in members}
    # The late one belongs to an early group: it is closed before they complete the baseline.
    late = {late_one.record: next(iter(groups))}
    late_one.story = "late"
    for p in people:
        g = where.get(p.record) or late.get(p.record) or rng.choice(list(groups))
        dict(p.forms)["screening"][group.group_field] = g
    followups: dict[str, list[str]] = {}
    later = [t.key for t in protocol.timepoints if t.anchor == "allocation"]
    for record in where:
        reached: list[str] = []
        for timepoint, lost in zip(later, ATTRITION, strict=False):
            if rng.random() < lost:
                break
            reached.append(timepoint)
        followups[record] = reached
    return GroupCohort(people, groups, late, followups)
