"""Pure reports rules: Wilson CI against statsmodels, verdict boundaries, criteria
evaluation, CONSORT boxes that add up, timepoint states, recruitment projections."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from statsmodels.stats.proportion import proportion_confint

from services.core.protocol import Criterion, RecruitmentPlan, load_protocol
from services.reports.domain import (
    ArmOf,
    Facts,
    ParticipantFacts,
    TimepointDone,
    TimepointState,
    cohort_on,
    consort_flow,
    enrolment_box,
    evaluate,
    feasibility,
    recruitment,
    retention,
    timepoint_state,
    verdict_for,
    wilson,
)

PROTOCOL = load_protocol("protocols/perpain-pilot.yaml")
TPS = PROTOCOL.timepoints
assert PROTOCOL.reports is not None
RULES = PROTOCOL.reports
DAY0 = date(2026, 1, 5)  # a Monday


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 10, tzinfo=UTC)


# ── Wilson ────────────────────────────────────────────────────────────────
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_equals_statsmodels(xn: tuple[int, int], confidence: float) -> None:
    x, n = xn
    low, high = wilson(x, n, confidence)
    ref_low, ref_high = proportion_confint(x, n, alpha=1 - confidence, method="wilson")
    assert abs(low - ref_low) <= 1e-12 and abs(high - ref_high) <= 1e-12


@pytest.mark.parametrize(("x", "n"), [(0, 1), (1, 1), (0, 105), (105, 105), (100, 105)])
def test_wilson_edges_match_statsmodels(x: int, n: int) -> None:
    ref = proportion_confint(x, n, alpha=0.05, method="wilson")
    assert wilson(x, n) == pytest.approx(ref, abs=1e-12)


def test_wilson_refuses_empty_or_impossible() -> None:
    with pytest.raises(ValueError):
        wilson(0, 0)
    with pytest.raises(ValueError):
        wilson(3, 2)


# ── verdicts ──────────────────────────────────────────────────────────────
def _criterion(key: str) -> Criterion:
    return next(c for c in RULES.feasibility if c.key == key)


@pytest.mark.parametrize(("x", "n", "verdict"), [
    (19, 20, "given"), (94, 99, "readjust"), (95, 100, "given"), (3, 4, "readjust"),
    (74, 100, "not_given"), (75, 100, "readjust"), (0, 5, "not_given"), (20, 20, "given")])
def test_completion_verdict_boundaries_are_inclusive_and_exact(x: int, n: int, verdict: str) -> None:
    assert verdict_for(_criterion("assessment_completion"), x, n, strategy_changed=False) == verdict


@pytest.mark.parametrize(("x", "verdict"), [(105, "given"), (104, "readjust"), (90, "readjust"),
                                            (89, "not_given"), (0, "not_given"), (200, "given")])
def test_randomized_count_verdicts(x: int, verdict: str) -> None:
    assert verdict_for(_criterion("randomized"), x, 110, strategy_changed=False) == verdict


def test_recruitment_after_a_changed_strategy_is_readjust() -> None:
    c = _criterion("recruitment")
    assert verdict_for(c, 105, 120, strategy_changed=False) == "given"
    assert verdict_for(c, 105, 120, strategy_changed=True) == "readjust"
    assert verdict_for(c, 104, 120, strategy_changed=True) == "not_given"


def test_a_proportion_without_denominator_has_no_verdict() -> None:
    assert verdict_for(_criterion("retention"), 0, 0, strategy_changed=False) is None


# ── a small cohort ────────────────────────────────────────────────────────
def person(record: str, **kw: object) -> ParticipantFacts:
    base: dict[str, object] = {"first_seen": DAY0, "screened_on": DAY0, "eligible": True,
                               "consent": True, "consented_on": DAY0,
                               "baseline_complete_on": DAY0}
    base.update(kw)
    return ParticipantFacts(record=record, **base)  # type: ignore[arg-type]


def randomized(record: str, day: date = DAY0, **kw: object) -> ParticipantFacts:
    return person(record, randomized_at=at(day), module="PERT", **kw)


COHORT = Facts(
    participants=[
        person("a1", eligible=False, consent=None, consented_on=None, baseline_complete_on=None),
        person("a2", consent=False, consented_on=None, baseline_complete_on=None),
        person("a3", withdrawn_on=DAY0, withdrawal_reason="participant_decision"),
        person("a4", baseline_complete_on=None),  # awaiting randomization
        randomized("r1"), randomized("r2"),
        randomized("r3", withdrawn_on=DAY0 + timedelta(days=40), withdrawal_reason="lost_to_follow_up",
                   preventable=False),
        randomized("r4", withdrawn_on=DAY0 + timedelta(days=10), withdrawal_reason="adverse_event",
                   preventable=True),
        randomized("r5", day=DAY0 + timedelta(days=60)),
    ],
    timepoints=[TimepointDone("r1", "t1", at(DAY0 + timedelta(days=85)), 0),
                TimepointDone("r1", "week_4", at(DAY0 + timedelta(days=29)), 2),
                TimepointDone("r2", "week_4", at(DAY0 + timedelta(days=30)), 0)])
AS_OF = DAY0 + timedelta(days=120)


def test_enrolment_boxes_partition_the_assessed() -> None:
    cohort = cohort_on(COHORT, TPS, AS_OF)
    boxes = {s.record: enrolment_box(s) for s in cohort}
    assert boxes == {"a1": "not_meeting_criteria", "a2": "declined", "a3": "other",
                     "a4": "awaiting", **{f"r{i}": "randomized" for i in range(1, 6)}}
    flow = consort_flow(cohort, as_of=AS_OF, primary="t1", lost_reasons=["lost_to_follow_up"])
    assert flow.assessed == flow.excluded_total + flow.awaiting_randomization + flow.randomized == 9


def test_group_boxes_add_up_and_name_reasons() -> None:
    flow = consort_flow(cohort_on(COHORT, TPS, AS_OF), as_of=AS_OF, primary="t1",
                        lost_reasons=["lost_to_follow_up"])
    g = flow.pooled
    assert g.allocated == 5 == g.lost_to_follow_up + g.discontinued + g.continuing
    assert g.allocated == g.analysed + g.not_analysed
    assert g.lost_reasons == {"lost_to_follow_up": 1} and g.discontinued_reasons == {"adverse_event": 1}
    assert g.analysed == 1  # r1 completed T1
    # r2: T1 window (day 84..112) closed → missed; r3, r4 withdrew; r5: T1 not yet due
    assert g.not_analysed_reasons == {"awaiting": 1, "missed_primary_timepoint": 1, "withdrawn": 2}
    assert g.received_intervention is None
    assert flow.by_arm is None and flow.by_cluster_module is None


def test_per_arm_flow_only_with_an_arm_map_and_still_adds_up() -> None:
    cohort = cohort_on(COHORT, TPS, AS_OF)
    arms = ArmOf(arm={"r1": "personalized", "r2": "non_personalized", "r3": "personalized",
                      "r4": "non_personalized", "r5": None},
                 cluster={"r1": "DYS", "r2": "ID", "r3": "DYS", "r4": "AC", "r5": "ID"})
    flow = consort_flow(cohort, as_of=AS_OF, primary="t1", lost_reasons=["lost_to_follow_up"],
                        arms=["personalized", "non_personalized"], arm_of=arms)
    assert flow.by_arm is not None and flow.by_cluster_module is not None
    assert [g.group for g in flow.by_arm] == ["personalized", "non_personalized", "not_in_evaluation"]
    assert sum(g.allocated for g in flow.by_arm) == flow.randomized
    assert sum(g.allocated for g in flow.by_cluster_module) == flow.randomized
    for g in flow.by_arm:
        assert g.allocated == g.lost_to_follow_up + g.discontinued + g.continuing
        assert g.allocated == g.analysed + g.not_analysed


def test_timepoint_states() -> None:
    target, window = date(2026, 3, 1), (-3, 14)
    def state(as_of: date, done: date | None = None, gone: date | None = None) -> TimepointState:
        return timepoint_state(target, window, done_on=done, withdrawn_on=gone, as_of=as_of)
    assert state(date(2026, 2, 25)) is TimepointState.NOT_YET_DUE
    assert state(date(2026, 2, 26)) is TimepointState.OPEN
    assert state(date(2026, 3, 15)) is TimepointState.OPEN
    assert state(date(2026, 3, 16)) is TimepointState.OVERDUE
    assert state(date(2026, 3, 16), done=date(2026, 3, 2)) is TimepointState.COMPLETE
    assert state(date(2026, 3, 1), done=date(2026, 3, 2)) is TimepointState.OPEN  # not done yet then
    assert state(date(2026, 3, 16), gone=date(2026, 3, 1)) is TimepointState.LOST
    assert state(date(2026, 4, 1), gone=date(2026, 3, 20)) is TimepointState.OVERDUE  # missed first


def test_criteria_count_the_numerator_within_the_denominator() -> None:
    cohort = cohort_on(COHORT, TPS, AS_OF)
    results = {r.key: r for r in feasibility(RULES.feasibility, cohort, TPS, as_of=AS_OF,
                                             strategy_changed_on=None)}
    assert (results["recruitment"].numerator, results["recruitment"].denominator) == (7, 8)
    assert results["recruitment"].verdict == "not_given"
    assert (results["randomized"].numerator, results["randomized"].denominator) == (5, 7)
    completion = results["assessment_completion"]
    assert (completion.numerator, completion.denominator) == (6, 7)
    assert completion.value == pytest.approx(6 / 7) and completion.verdict == "readjust"
    assert (completion.ci_low, completion.ci_high) == pytest.approx(
        proportion_confint(6, 7, alpha=0.05, method="wilson"), abs=1e-12)
    # due at T1 (day 84) by day 120: r1..r4; complete at T1 or T2: r1
    retention_ = results["retention"]
    assert (retention_.numerator, retention_.denominator) == (1, 4)
    assert retention_.verdict == "not_given"


def test_retention_criterion_is_not_assessable_before_anyone_is_due() -> None:
    cohort = cohort_on(COHORT, TPS, DAY0 + timedelta(days=30))
    result = evaluate(next(c for c in RULES.feasibility if c.key == "retention"), cohort, TPS,
                      strategy_changed=False)
    assert result.denominator == 0 and result.value is None and result.verdict is None
    assert result.note


def test_as_of_ignores_what_happened_later() -> None:
    early = cohort_on(COHORT, TPS, DAY0 + timedelta(days=30))
    assert sum(s.randomized for s in early) == 4  # r5 is randomized on day 60
    assert not any(s.withdrawn for s in early if s.record in {"r3"})


def test_retention_per_timepoint_and_reasons() -> None:
    r = retention(cohort_on(COHORT, TPS, AS_OF), TPS, as_of=AS_OF, lost_reasons=["lost_to_follow_up"])
    week4 = next(t for t in r.timepoints if t.timepoint == "week_4")
    # r3 and r4 withdrew before the week-4 window closed; r5's window closed unanswered
    assert (week4.complete, week4.lost, week4.overdue, week4.due) == (2, 2, 1, 5)
    assert week4.reminders_per_completed == 1.0
    assert [t.timepoint for t in r.timepoints] == ["week_4", "week_8", "t1", "t2"]
    stages = {(x.stage, x.reason, x.preventable): x.participants for x in r.reasons}
    assert stages == {("before_randomization", "participant_decision", "unknown"): 1,
                      ("discontinued", "adverse_event", "yes"): 1,
                      ("lost_to_follow_up", "lost_to_follow_up", "no"): 1}
    assert r.preventable == {"yes": 1, "no": 1, "unknown": 1}


# ── recruitment ───────────────────────────────────────────────────────────
def _plan(**kw: object) -> RecruitmentPlan:
    return RULES.recruitment.model_copy(update=kw)


def test_recruitment_weeks_cumulate_and_project() -> None:
    facts = Facts(participants=[randomized(f"p{i}", day=DAY0 + timedelta(days=7 * (i // 2)))
                                for i in range(20)])  # two a week for ten weeks
    as_of = DAY0 + timedelta(days=69)  # a Sunday: ten full weeks
    r = recruitment(cohort_on(facts, TPS, as_of), _plan(planned_start=DAY0, target=30), as_of=as_of)
    assert [w.randomized for w in r.weeks] == [2] * 10
    assert r.weeks[-1].cumulative == 20 and r.remaining == 10
    assert r.rate_per_week == pytest.approx(2.0)
    assert r.recent_rate_per_week == pytest.approx(2.0)
    assert r.projected_completion_linear == as_of + timedelta(days=35)
    assert r.planned_end == DAY0 + timedelta(weeks=52)
    assert r.readjust_start_by == r.planned_end - timedelta(weeks=12)
    assert r.readjust_needed is False


def test_recruitment_that_slowed_down_needs_readjusting() -> None:
    facts = Facts(participants=[randomized(f"p{i}", day=DAY0 + timedelta(days=i)) for i in range(10)])
    as_of = DAY0 + timedelta(weeks=30)
    r = recruitment(cohort_on(facts, TPS, as_of), _plan(planned_start=DAY0), as_of=as_of)
    assert r.recent_rate_per_week == 0 and r.projected_completion_recent is None
    assert r.readjust_needed is True
    assert r.target_reached_on is None


def test_recruitment_reached_reports_the_day() -> None:
    facts = Facts(participants=[randomized(f"p{i:03}", day=DAY0 + timedelta(days=i // 10))
                                for i in range(105)])
    as_of = DAY0 + timedelta(days=20)
    r = recruitment(cohort_on(facts, TPS, as_of), _plan(), as_of=as_of)
    assert r.target_reached_on == DAY0 + timedelta(days=10)
    assert r.projected_completion_recent == r.target_reached_on and r.readjust_needed is False


def test_weeks_start_at_the_first_randomization_even_before_the_planned_start() -> None:
    facts = Facts(participants=[randomized("early", day=DAY0),
                                randomized("later", day=DAY0 + timedelta(days=14))])
    as_of = DAY0 + timedelta(days=20)
    r = recruitment(cohort_on(facts, TPS, as_of), _plan(planned_start=DAY0 + timedelta(days=7)),
                    as_of=as_of)
    assert [w.cumulative for w in r.weeks] == [1, 1, 2]


def test_received_intervention_is_counted_as_of_the_date_when_recorded() -> None:
    facts = Facts(participants=[randomized("s1", received_on=DAY0 + timedelta(days=3)),
                                randomized("s2", received_on=DAY0 + timedelta(days=30)),
                                randomized("s3")])
    arms = ArmOf(arm={"s1": "personalized", "s2": "personalized", "s3": "non_personalized"},
                 cluster={"s1": "DYS", "s2": "DYS", "s3": "ID"})

    def flow(day: date, recorded: bool = True):  # type: ignore[no-untyped-def]
        return consort_flow(cohort_on(facts, TPS, day), as_of=day, primary="t1",
                            lost_reasons=["lost_to_follow_up"], received_recorded=recorded,
                            arms=["personalized", "non_personalized"], arm_of=arms)

    assert flow(DAY0 + timedelta(days=10)).pooled.received_intervention == 1
    later = flow(DAY0 + timedelta(days=40))
    assert later.pooled.received_intervention == 2 and later.notes == []
    assert [g.received_intervention for g in later.by_arm or []] == [2, 0]
    assert flow(AS_OF, recorded=False).pooled.received_intervention is None
