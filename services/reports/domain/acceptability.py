"""Acceptability and safety summary: NEQ negative effects per timepoint, AE and SAE counts,
pooled (blinded) or per arm (DSMB, with the arm map of one request).

Diary adherence is not computable from the bus: notifications records diary answers in its
own database and publishes no event about them; the summary says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from .facts import AdverseEventFact, ArmOf, NeqAnswer
from .status import Status


@dataclass(frozen=True)
class NegativeEffects:
    timepoint: str
    questionnaires: int
    with_negative_effect: int
    mean_effects: float | None
    attributed_to_treatment: int  # questionnaires with ≥ 1 effect attributed to the treatment


@dataclass(frozen=True)
class AdverseEventCounts:
    events: int
    serious: int
    participants_with_event: int
    participants_with_serious: int


@dataclass(frozen=True)
class GroupSafety:
    group: str
    randomized: int
    negative_effects: list[NegativeEffects]
    adverse_events: AdverseEventCounts


@dataclass(frozen=True)
class Acceptability:
    as_of: date
    diary_adherence: float | None
    pooled: GroupSafety
    by_arm: list[GroupSafety] | None = None
    notes: list[str] = field(default_factory=list)


def _group(group: str, members: set[str], randomized: int, neq: Sequence[NeqAnswer],
           aes: Sequence[AdverseEventFact], timepoints: Sequence[str]) -> GroupSafety:
    effects = []
    for tp in timepoints:
        answers = [a for a in neq if a.timepoint == tp and a.record in members]
        effects.append(NegativeEffects(
            timepoint=tp, questionnaires=len(answers),
            with_negative_effect=sum(1 for a in answers if a.effects > 0),
            mean_effects=sum(a.effects for a in answers) / len(answers) if answers else None,
            attributed_to_treatment=sum(1 for a in answers if a.attributed_to_treatment > 0)))
    mine = [e for e in aes if e.record in members]
    counts = AdverseEventCounts(
        events=len(mine), serious=sum(e.serious for e in mine),
        participants_with_event=len({e.record for e in mine}),
        participants_with_serious=len({e.record for e in mine if e.serious}))
    return GroupSafety(group, randomized, effects, counts)


def acceptability(cohort: Sequence[Status], neq: Sequence[NeqAnswer],
                  aes: Sequence[AdverseEventFact], *, neq_timepoints: Sequence[str],
                  as_of: date, arms: Sequence[str] = (),
                  arm_of: ArmOf | None = None) -> Acceptability:
    """AEs and NEQs count when reported by `as_of` (AEs) and for assessed participants."""
    assessed = {s.record for s in cohort}
    randomized = {s.record for s in cohort if s.randomized}
    aes = [e for e in aes if e.reported_on <= as_of and e.record in assessed]
    neq = [a for a in neq if a.record in randomized]
    notes = ["diary adherence: not on the bus (notifications keeps diary answers to itself)"]
    pooled = _group("all", assessed, len(randomized), neq, aes, neq_timepoints)
    if arm_of is None:
        return Acceptability(as_of, None, pooled, notes=notes)
    groups: dict[str, set[str]] = {a: set() for a in arms}
    for r in randomized:
        groups.setdefault(arm_of.arm.get(r) or "not_in_evaluation", set()).add(r)
    by_arm = [_group(g, m, len(m), neq, aes, neq_timepoints) for g, m in groups.items()]
    return Acceptability(as_of, None, pooled, by_arm, notes)
