"""Diary adherence from the counts notifications publishes: answered in time of sent,
overall and per ISO week, for a group's randomized participants, as of a date."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.reports.domain import (
    AdverseEventFact,
    ArmOf,
    DiaryWeek,
    Facts,
    ParticipantFacts,
    acceptability,
    cohort_on,
    diary_adherence,
)
from tests.unit.reports.test_reports_domain import TPS

MONDAY = date(2026, 3, 2)  # ISO week 2026-W10
NEXT = MONDAY + timedelta(days=7)

WEEKS = [DiaryWeek("d1", "2026-W10", MONDAY, 20, 15), DiaryWeek("d1", "2026-W11", NEXT, 10, 2),
         DiaryWeek("d2", "2026-W10", MONDAY, 10, 10), DiaryWeek("x9", "2026-W10", MONDAY, 70, 0)]


def test_adherence_is_answered_of_sent_overall_and_per_week_for_the_members() -> None:
    a = diary_adherence(WEEKS, {"d1", "d2"}, as_of=NEXT)
    assert (a.participants, a.prompts_sent, a.answered_in_time) == (2, 40, 27)
    assert a.adherence == 27 / 40  # x9 is not a member
    assert [(w.week, w.participants, w.prompts_sent, w.answered_in_time, w.adherence)
            for w in a.weeks] == [("2026-W10", 2, 30, 25, 25 / 30), ("2026-W11", 1, 10, 2, 0.2)]


def test_a_week_counts_from_its_monday_on() -> None:
    a = diary_adherence(WEEKS, {"d1", "d2"}, as_of=NEXT - timedelta(days=1))
    assert [w.week for w in a.weeks] == ["2026-W10"] and a.adherence == 25 / 30


def test_no_prompts_or_no_recorded_answers_give_no_rate() -> None:
    assert diary_adherence(WEEKS, set(), as_of=NEXT).adherence is None
    a = diary_adherence(WEEKS, {"d1"}, as_of=NEXT, answers_recorded=False)
    assert a.prompts_sent == 30 and a.adherence is None
    assert all(w.adherence is None for w in a.weeks)


def _randomized(record: str) -> ParticipantFacts:
    return ParticipantFacts(record=record, first_seen=MONDAY, screened_on=MONDAY, eligible=True,
                            consent=True, consented_on=MONDAY, baseline_complete_on=MONDAY,
                            randomized_at=datetime(2026, 3, 2, 10, tzinfo=UTC), module="EMDI")


def test_pooled_for_blinded_readers_and_per_arm_with_an_arm_map() -> None:
    facts = Facts(participants=[_randomized("d1"), _randomized("d2")])
    cohort = cohort_on(facts, TPS, NEXT)
    aes: list[AdverseEventFact] = []
    blinded = acceptability(cohort, [], aes, neq_timepoints=[], as_of=NEXT, diary=WEEKS)
    assert blinded.by_arm is None and blinded.diary_adherence == 27 / 40
    assert blinded.pooled.diary.prompts_sent == 40  # x9 was never randomized: not counted
    arms = ArmOf(arm={"d1": "personalized", "d2": "non_personalized"}, cluster={})
    unblinded = acceptability(cohort, [], aes, neq_timepoints=[], as_of=NEXT, diary=WEEKS,
                              arms=["personalized", "non_personalized"], arm_of=arms)
    assert [(g.group, g.diary.adherence) for g in unblinded.by_arm or []] == [
        ("personalized", 17 / 30), ("non_personalized", 1.0)]
    assert unblinded.diary_adherence == blinded.diary_adherence
    unrecorded = acceptability(cohort, [], aes, neq_timepoints=[], as_of=NEXT, diary=WEEKS,
                               diary_answers_recorded=False)
    assert unrecorded.diary_adherence is None and "diary.answer_form" in unrecorded.notes[0]
