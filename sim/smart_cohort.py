"""A synthetic cohort for a multi-stage (SMART) seed trial (pcst-smart): the first stage's
screened people (sim/seed_cohort.py) and, for each, what site staff enter at the first
later stage's timepoint.

Stories at the stage (each allocated participant has one): `responder` (pain fell by the
rule's fraction or more), `non_responder`, `boundary` (a fall of exactly the fraction: a
response), `review` (the form is saved complete with the pain item blank, so the rule
cannot score it; the value is entered afterwards as a correction), `withdrawn` (withdraws
after the first stage; staff still save the stage form, which must allocate nothing) and
`missed` (never comes to the visit). One participant who withdrew before the first stage
also has the stage form saved: nobody without a first-stage allocation reaches the stage.
Drawn plausibly, labelled synthetic: no real person is here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from services.core.protocol import TrialProtocol

from .cohort import Participant
from .seed_cohort import make_seed_cohort

StageStory = Literal["responder", "non_responder", "boundary", "review", "withdrawn", "missed",
                     "not_allocated"]


@dataclass
class StageVisit:
    record: str
    story: StageStory
    forms: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # in the stage event
    correction: tuple[str, dict[str, str]] | None = None  # saved once the first round is in
    outcome: str | None = None  # what the rule must decide, computed here independently

    @property
    def expects_stage(self) -> bool:
        return self.story in ("responder", "non_responder", "boundary", "review")


def _responds(baseline: int, value: int, fraction: Fraction) -> bool:
    return value <= baseline * (1 - fraction)


def make_smart_cohort(protocol: TrialProtocol, *, eligible: int, seed: int = 15,
                      missed: float = 0.08) -> tuple[list[Participant], list[StageVisit]]:
    """The first-stage cohort and each participant's visit at the first stage's timepoint."""
    stage = protocol.randomization.stages[0]
    rule, forms = stage.rule, protocol.timepoint_by_key[stage.timepoint].forms
    fraction = Fraction(str(rule.min_reduction))
    rng = random.Random(seed + 1)
    cohort = make_seed_cohort(protocol, eligible=eligible, seed=seed)
    allocated = [p for p in cohort if p.expects_allocation]
    special: list[StageStory] = ["boundary", "review", "withdrawn"]
    stories: list[StageStory] = special + [
        "missed" if rng.random() < missed else rng.choice(["responder", "non_responder"])
        for _ in allocated[len(special):]]
    rng.shuffle(stories)
    f = protocol.redcap.fields
    visits = []
    for p, story in zip(allocated, stories, strict=True):
        baseline_form = dict(p.forms)["baseline_measures"]
        if story == "boundary":  # a baseline the fraction divides: 10 → 7 for 30%
            baseline_form[rule.baseline_field] = "10"
        b = int(baseline_form[rule.baseline_field])
        visit = StageVisit(p.record, story)
        if story == "missed":
            visits.append(visit)
            continue
        if story == "boundary":
            value = int(b * (1 - fraction))
        elif story in ("responder", "review"):
            value = rng.randint(0, int(b * (1 - fraction)))
        else:  # non-responders, and the withdrawn (their value never counts)
            value = rng.randint(int(b * (1 - fraction)) + 1, 10)
        entered = {rule.field: str(value)}  # saved complete (the emulator's default)
        if story == "withdrawn":
            visit.forms.append((protocol.redcap.withdrawal_form, {
                f.withdrawn: "1", "wd_date": "2026-01-15", "wd_reason": "1",
                "wd_preventable": "0"}))
        if story == "review":
            visit.forms.append((forms[0], {**entered, rule.field: ""}))
            visit.correction = (forms[0], entered)
        else:
            visit.forms.append((forms[0], entered))
        if visit.expects_stage:
            visit.outcome = ("responders" if _responds(b, value, fraction)
                             else "non_responders")
        visits.append(visit)
    # Someone who never had a first-stage allocation, yet whose stage form is saved.
    never = next((p for p in cohort if p.story == "withdrawn"), None)
    if never is not None:
        visits.append(StageVisit(never.record, "not_allocated", [(forms[0], {rule.field: "2"})]))
    return cohort, visits
