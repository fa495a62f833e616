"""Negative-effects screening: NEQ and INEP scoring, candidate adverse events.

Field names in problems follow the REDCap names (`{prefix}{n}`, `{prefix}{n}_impact`,
`{prefix}{n}_attr`) so the same message serves the API and the data manager.

A questionnaire never creates an adverse event, let alone an SAE: an NEQ effect that
the participant attributes to the treatment with impact at or above the protocol's
`neq_candidate_impact` yields a *candidate* for a clinician to triage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.core.protocol.safety import InepDesign

from .errors import FieldProblem, InvalidQuestionnaire

NEQ_IMPACT_MAX = 4  # NEQ impact: 0 = not at all … 4 = extremely
INEP_BIPOLAR_MAX = 3  # −3 much worse … +3 much better
INEP_UNIPOLAR_MAX = 3  # 0 not at all … 3 very much


class Attribution(StrEnum):
    TREATMENT = "treatment"
    OTHER = "other"


@dataclass(frozen=True)
class NeqAnswer:
    occurred: bool
    impact: int | None = None  # asked only if the effect occurred
    attribution: Attribution | None = None


@dataclass(frozen=True)
class NeqScore:
    answered: int  # items with occurred answered yes or no
    negative_effects: int  # items answered "occurred"
    attributed_to_treatment: int
    total_impact: int
    mean_impact: float | None  # over effects whose impact was given; None if none


def validate_neq(answers: Mapping[int, NeqAnswer], *, n_items: int,
                 prefix: str = "neq_") -> None:
    problems = []
    for n, a in sorted(answers.items()):
        if not 1 <= n <= n_items:
            problems.append(FieldProblem(f"{prefix}{n}", f"the NEQ has items 1..{n_items}"))
            continue
        if a.impact is not None and not 0 <= a.impact <= NEQ_IMPACT_MAX:
            problems.append(FieldProblem(f"{prefix}{n}_impact", f"must be 0..{NEQ_IMPACT_MAX}"))
        if not a.occurred and a.impact is not None:
            problems.append(FieldProblem(
                f"{prefix}{n}_impact", "impact given for an effect that did not occur"))
    if problems:
        raise InvalidQuestionnaire("NEQ", problems)


def score_neq(answers: Mapping[int, NeqAnswer], *, n_items: int) -> NeqScore:
    validate_neq(answers, n_items=n_items)
    effects = [a for a in answers.values() if a.occurred]
    impacts = [a.impact for a in effects if a.impact is not None]
    return NeqScore(
        answered=len(answers),
        negative_effects=len(effects),
        attributed_to_treatment=sum(a.attribution == Attribution.TREATMENT for a in effects),
        total_impact=sum(impacts),
        mean_impact=sum(impacts) / len(impacts) if impacts else None,
    )


@dataclass(frozen=True)
class CandidateEffect:
    item: int
    impact: int


@dataclass(frozen=True)
class CandidateAdverseEvent:
    """A questionnaire finding for a clinician to triage; not an adverse event."""

    participant: str
    source: str  # where it came from, e.g. "neq@t1_post#1"
    effects: tuple[CandidateEffect, ...]

    @property
    def key(self) -> str:
        """Stable identity: a redelivered questionnaire yields the same key."""
        return f"{self.participant}:{self.source}"


def screen_neq(answers: Mapping[int, NeqAnswer], *, participant: str, source: str,
               n_items: int, candidate_impact: int) -> CandidateAdverseEvent | None:
    """The candidate adverse event this NEQ response opens, or None."""
    validate_neq(answers, n_items=n_items)
    hits = tuple(
        CandidateEffect(n, a.impact) for n, a in sorted(answers.items())
        if a.occurred and a.attribution == Attribution.TREATMENT
        and a.impact is not None and a.impact >= candidate_impact)
    return CandidateAdverseEvent(participant, source, hits) if hits else None


# --- INEP ------------------------------------------------------------------------------

@dataclass(frozen=True)
class InepAnswer:
    value: int  # bipolar items −3..+3 (below 0 = worse); unipolar items 0..3
    attribution: Attribution | None = None


@dataclass(frozen=True)
class InepScaleScore:
    items: int
    answered: int
    negative_effects: int  # bipolar answered below 0, unipolar above 0
    attributed_to_treatment: int
    mean_magnitude: float | None  # mean size of the negative effects (1..3)


@dataclass(frozen=True)
class InepScore:
    total: InepScaleScore
    subscales: dict[str, InepScaleScore]


def validate_inep(answers: Mapping[int, InepAnswer], design: InepDesign, *,
                  prefix: str = "inep_") -> None:
    bipolar = set(design.bipolar_items)
    problems = []
    for n, a in sorted(answers.items()):
        if not 1 <= n <= design.items:
            problems.append(FieldProblem(f"{prefix}{n}", f"the INEP has items 1..{design.items}"))
        elif n in bipolar and not -INEP_BIPOLAR_MAX <= a.value <= INEP_BIPOLAR_MAX:
            problems.append(FieldProblem(
                f"{prefix}{n}", f"bipolar item: must be -{INEP_BIPOLAR_MAX}..{INEP_BIPOLAR_MAX}"))
        elif n not in bipolar and not 0 <= a.value <= INEP_UNIPOLAR_MAX:
            problems.append(FieldProblem(
                f"{prefix}{n}", f"unipolar item: must be 0..{INEP_UNIPOLAR_MAX}"))
    if problems:
        raise InvalidQuestionnaire("INEP", problems)


def _magnitude(n: int, a: InepAnswer, bipolar: set[int]) -> int:
    """Size of the negative effect of one answer (0 = none)."""
    return max(0, -a.value) if n in bipolar else a.value


def _scale(items: list[int], answers: Mapping[int, InepAnswer],
           bipolar: set[int]) -> InepScaleScore:
    given = {n: answers[n] for n in items if n in answers}
    negative = {n: a for n, a in given.items() if _magnitude(n, a, bipolar) > 0}
    sizes = [_magnitude(n, a, bipolar) for n, a in negative.items()]
    return InepScaleScore(
        items=len(items),
        answered=len(given),
        negative_effects=len(negative),
        attributed_to_treatment=sum(
            a.attribution == Attribution.TREATMENT for a in negative.values()),
        mean_magnitude=sum(sizes) / len(sizes) if sizes else None,
    )


def score_inep(answers: Mapping[int, InepAnswer], design: InepDesign) -> InepScore:
    """Whole-instrument counts plus each subscale the protocol names."""
    validate_inep(answers, design)
    bipolar = set(design.bipolar_items)
    return InepScore(
        total=_scale(list(range(1, design.items + 1)), answers, bipolar),
        subscales={name: _scale(items, answers, bipolar)
                   for name, items in design.subscales.items()},
    )
