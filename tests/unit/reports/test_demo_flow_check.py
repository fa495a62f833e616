"""The demo's flow check: the synthetic cohort the demo enters, told to the reports domain
as the bus would tell it, lands every participant exactly once in each CONSORT level."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

from services.core.protocol import load_protocol
from services.reports.domain import ArmOf, Facts, ParticipantFacts, cohort_on, consort_flow
from sim.cohort import make_cohort
from tailor_cli.demo.checks import Verdict, check_flow, expected_enrolment, expected_received

P = load_protocol("protocols/perpain-pilot.yaml")
DAY = date(2026, 6, 1)


def _facts(story: str, record: str, started: bool = False) -> ParticipantFacts:
    eligible = story != "ineligible"
    return ParticipantFacts(
        record=record, first_seen=DAY, screened_on=DAY, eligible=eligible,
        consent=True if eligible else None, consented_on=DAY if eligible else None,
        baseline_complete_on=DAY if eligible and story != "unscorable" else None,
        randomized_at=datetime(2026, 6, 1, 12, tzinfo=UTC) if story == "allocate" else None,
        module="PERT" if story == "allocate" else None,
        withdrawn_on=DAY if story == "withdrawn" else None,
        withdrawal_reason="participant_decision" if story == "withdrawn" else None,
        received_on=DAY if started else None)


def test_the_demo_cohort_is_counted_once_per_level() -> None:
    cohort = make_cohort(P)
    facts = Facts(participants=[_facts(p.story, p.record, p.started_module) for p in cohort])
    statuses = cohort_on(facts, P.timepoints, DAY)
    arms = ArmOf(arm={p.record: "personalized" for p in cohort if p.story == "allocate"}, cluster={})
    kw = {"as_of": DAY, "primary": "t1", "lost_reasons": ["lost_to_follow_up"],
          "arms": [a.key for a in P.arms], "received_recorded": True}
    blinded = dataclasses.asdict(consort_flow(statuses, **kw))  # type: ignore[arg-type]
    unblinded = dataclasses.asdict(consort_flow(statuses, arm_of=arms, **kw))  # type: ignore[arg-type]
    verdict = Verdict()
    check_flow(verdict, cohort, blinded, unblinded)
    assert verdict.ok, verdict.failed
    assert expected_enrolment(cohort) == {"assessed": 117, "not_meeting_criteria": 12, "declined": 0,
                                          "other": 1, "awaiting_randomization": 1, "randomized": 103}
    # most started their module, not all: the box is checked, and it is not simply "allocated"
    assert 0 < blinded["pooled"]["received_intervention"] == expected_received(cohort) < 103


def test_a_received_intervention_box_that_misses_the_module_starts_fails_the_check() -> None:
    """What the demo showed before its cohort recorded module starts: the box read 0."""
    cohort = make_cohort(P)
    facts = Facts(participants=[_facts(p.story, p.record) for p in cohort])  # starts not seen
    statuses = cohort_on(facts, P.timepoints, DAY)
    kw = {"as_of": DAY, "primary": "t1", "lost_reasons": ["lost_to_follow_up"],
          "arms": [a.key for a in P.arms], "received_recorded": True}
    flow = dataclasses.asdict(consort_flow(statuses, **kw))  # type: ignore[arg-type]
    verdict = Verdict()
    check_flow(verdict, cohort, flow, {"by_arm": []})
    assert any("received allocated intervention: 0 counted" in f for f in verdict.failed)


def test_a_participant_counted_twice_fails_the_check() -> None:
    cohort = make_cohort(P)
    flow = {"assessed": 117, "excluded": {"not_meeting_criteria": 12, "declined": 0, "other": 1},
            "awaiting_randomization": 1, "randomized": 104, "by_arm": None,
            "pooled": {"allocated": 104, "lost_to_follow_up": 0, "discontinued": 0, "continuing": 104,
                       "analysed": 0, "not_analysed": 104}}
    verdict = Verdict()
    check_flow(verdict, cohort, flow, {"by_arm": []})
    assert not verdict.ok


def test_feasibility_counts_that_miss_consented_participants_fail_the_check() -> None:
    """What the first demo run showed: follow-up saves had erased consent for half."""
    from tailor_cli.demo.checks import check_feasibility

    cohort = make_cohort(P)
    good = [{"key": "recruitment", "numerator": 105, "denominator": 105},
            {"key": "randomized", "numerator": 103, "denominator": 105}]
    verdict = Verdict()
    check_feasibility(verdict, cohort, good)
    assert verdict.ok, verdict.failed
    verdict = Verdict()
    check_feasibility(verdict, cohort, [{"key": "recruitment", "numerator": 54, "denominator": 54},
                                        {"key": "randomized", "numerator": 52, "denominator": 54}])
    assert len(verdict.failed) == 2
