"""Acceptability and safety summary: diary adherence of the diary module, NEQ negative
effects per timepoint, AE and SAE counts, pooled (blinded) or per arm (DSMB and study
manager, with the arm map of one request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from .diary import DiaryAdherence, diary_adherence
from .facts import AdverseEventFact, ArmOf, DiaryWeek, NeqAnswer
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
    diary: DiaryAdherence


@dataclass(frozen=True)
class Acceptability:
    as_of: date
    diary_adherence: float | None  # the pooled diary's answered / sent (details: pooled.diary)
    pooled: GroupSafety
    by_arm: list[GroupSafety] | None = None
    notes: list[str] = field(default_factory=list)


def _group(group: str, members: set[str], randomized: set[str], neq: Sequence[NeqAnswer],
           aes: Sequence[AdverseEventFact], timepoints: Sequence[str], diary: DiaryAdherence
           ) -> GroupSafety:
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
    return GroupSafety(group, len(randomized), effects, counts, diary)


def acceptability(cohort: Sequence[Status], neq: Sequence[NeqAnswer],
                  aes: Sequence[AdverseEventFact], *, neq_timepoints: Sequence[str],
                  as_of: date, arms: Sequence[str] = (), arm_of: ArmOf | None = None,
                  diary: Sequence[DiaryWeek] = (), diary_answers_recorded: bool = True
                  ) -> Acceptability:
    """AEs and NEQs count when reported by `as_of` (AEs) and for assessed participants;
    diary weeks once begun by `as_of`, for randomized participants."""
    assessed = {s.record for s in cohort}
    randomized = {s.record for s in cohort if s.randomized}
    aes = [e for e in aes if e.reported_on <= as_of and e.record in assessed]
    neq = [a for a in neq if a.record in randomized]
    notes = [] if diary_answers_recorded else [
        "diary adherence: the protocol reports no diary answers back (diary.answer_form), "
        "so only prompts sent are counted"]

    def adherence(members: set[str]) -> DiaryAdherence:
        return diary_adherence(diary, members, as_of=as_of,
                               answers_recorded=diary_answers_recorded)

    pooled_diary = adherence(randomized)
    pooled = _group("all", assessed, randomized, neq, aes, neq_timepoints, pooled_diary)
    if arm_of is None:
        return Acceptability(as_of, pooled_diary.adherence, pooled, notes=notes)
    groups: dict[str, set[str]] = {a: set() for a in arms}
    for r in randomized:
        groups.setdefault(arm_of.arm.get(r) or "not_in_evaluation", set()).add(r)
    by_arm = [_group(g, m, m, neq, aes, neq_timepoints, adherence(m)) for g, m in groups.items()]
    return Acceptability(as_of, pooled_diary.adherence, pooled, by_arm, notes)
