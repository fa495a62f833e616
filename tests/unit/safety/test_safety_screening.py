"""NEQ and INEP scoring on hand-computed examples; candidate adverse events."""

from __future__ import annotations

import pytest

from services.core.protocol.safety import InepDesign
from services.safety.domain import (
    Attribution,
    CandidateEffect,
    InepAnswer,
    InvalidQuestionnaire,
    NeqAnswer,
    score_inep,
    score_neq,
    screen_neq,
)

T, OTH = Attribution.TREATMENT, Attribution.OTHER

NEQ = {
    1: NeqAnswer(True, 4, T),
    2: NeqAnswer(True, 1, OTH),
    3: NeqAnswer(True, 3, T),
    4: NeqAnswer(True, None, T),  # impact skipped
    5: NeqAnswer(False),
    6: NeqAnswer(False),
}


def test_neq_counts_effects_attributions_and_mean_impact() -> None:
    score = score_neq(NEQ, n_items=32)
    assert score.answered == 6
    assert score.negative_effects == 4
    assert score.attributed_to_treatment == 3
    assert score.total_impact == 4 + 1 + 3
    assert score.mean_impact == pytest.approx(8 / 3)


def test_neq_without_effects_has_no_mean_impact() -> None:
    score = score_neq({1: NeqAnswer(False), 2: NeqAnswer(False)}, n_items=32)
    assert (score.negative_effects, score.attributed_to_treatment, score.mean_impact) == (
        0, 0, None)


@pytest.mark.parametrize(("answers", "fields"), [
    ({33: NeqAnswer(False)}, ["neq_33"]),
    ({0: NeqAnswer(False)}, ["neq_0"]),
    ({1: NeqAnswer(True, 5, T)}, ["neq_1_impact"]),
    ({1: NeqAnswer(True, -1, T)}, ["neq_1_impact"]),
    ({2: NeqAnswer(False, 2)}, ["neq_2_impact"]),
    ({1: NeqAnswer(True, 9, T), 2: NeqAnswer(False, 1)}, ["neq_1_impact", "neq_2_impact"]),
])
def test_invalid_neq_answers_are_named(answers, fields: list[str]) -> None:
    with pytest.raises(InvalidQuestionnaire) as info:
        score_neq(answers, n_items=32)
    assert info.value.fields == fields


def test_treatment_effects_at_or_above_the_threshold_open_one_candidate() -> None:
    candidate = screen_neq(NEQ, participant="P-1", source="neq@t1_post#1", n_items=32,
                           candidate_impact=3)
    assert candidate is not None
    assert candidate.effects == (CandidateEffect(1, 4), CandidateEffect(3, 3))
    assert candidate.key == "P-1:neq@t1_post#1"


@pytest.mark.parametrize(("answer", "threshold", "opens"), [
    (NeqAnswer(True, 3, T), 3, True),   # exactly at the threshold
    (NeqAnswer(True, 2, T), 3, False),  # just below
    (NeqAnswer(True, 4, OTH), 3, False),  # high impact, other circumstances
    (NeqAnswer(True, 4, None), 3, False),  # attribution not given
    (NeqAnswer(True, None, T), 0, False),  # impact not given
    (NeqAnswer(True, 0, T), 0, True),
])
def test_candidate_threshold(answer: NeqAnswer, threshold: int, opens: bool) -> None:
    found = screen_neq({7: answer}, participant="P-1", source="neq", n_items=32,
                       candidate_impact=threshold)
    assert (found is not None) is opens


def test_the_protocol_threshold_drives_the_candidate(rules) -> None:
    at = {1: NeqAnswer(True, rules.neq_candidate_impact, T)}
    below = {1: NeqAnswer(True, rules.neq_candidate_impact - 1, T)}
    kwargs = {"participant": "P", "source": "neq", "n_items": rules.neq_items,
              "candidate_impact": rules.neq_candidate_impact}
    assert screen_neq(at, **kwargs) is not None
    assert screen_neq(below, **kwargs) is None


DESIGN = InepDesign(items=6, bipolar_items=[1, 2, 3, 4], unipolar_items=[5, 6],
                    subscales={"a": [1, 2], "b": [3, 5]})
INEP = {
    1: InepAnswer(-2, T),
    2: InepAnswer(1, OTH),  # improvement: not a negative effect
    3: InepAnswer(-3, OTH),
    4: InepAnswer(0),
    5: InepAnswer(2, T),
    6: InepAnswer(0),
}


def test_inep_total_counts_deteriorations_and_unipolar_effects() -> None:
    total = score_inep(INEP, DESIGN).total
    assert (total.items, total.answered) == (6, 6)
    assert total.negative_effects == 3  # items 1, 3, 5
    assert total.attributed_to_treatment == 2  # items 1, 5
    assert total.mean_magnitude == pytest.approx((2 + 3 + 2) / 3)


def test_inep_subscales_score_only_their_items() -> None:
    subs = score_inep(INEP, DESIGN).subscales
    assert (subs["a"].negative_effects, subs["a"].attributed_to_treatment,
            subs["a"].mean_magnitude) == (1, 1, 2.0)
    assert (subs["b"].negative_effects, subs["b"].attributed_to_treatment,
            subs["b"].mean_magnitude) == (2, 1, 2.5)


def test_inep_subscale_with_unanswered_items_reports_what_was_answered() -> None:
    sub = score_inep({1: InepAnswer(-1, T)}, DESIGN).subscales["a"]
    assert (sub.items, sub.answered, sub.negative_effects) == (2, 1, 1)
    assert score_inep({}, DESIGN).subscales["b"].mean_magnitude is None


def test_inep_uses_the_subscales_the_protocol_names(rules) -> None:
    score = score_inep({}, rules.inep)
    assert set(score.subscales) == {"work", "partnership", "family_peers"}
    assert score.total.items == 21


@pytest.mark.parametrize(("answers", "field"), [
    ({1: InepAnswer(-4)}, "inep_1"),
    ({1: InepAnswer(4)}, "inep_1"),
    ({5: InepAnswer(-1)}, "inep_5"),
    ({6: InepAnswer(4)}, "inep_6"),
    ({7: InepAnswer(0)}, "inep_7"),
])
def test_invalid_inep_answers_are_named(answers, field: str) -> None:
    with pytest.raises(InvalidQuestionnaire) as info:
        score_inep(answers, DESIGN)
    assert info.value.fields == [field]
