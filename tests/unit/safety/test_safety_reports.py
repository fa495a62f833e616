"""Blinded reports by module and unblinded (DSMB) reports by arm, on a hand-built trial."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.safety.domain import (
    Allocation,
    IncompleteArmMap,
    acknowledge,
    blinded_report,
    follow_up,
    mark_sent,
    open_case,
    plan_obligations,
    unblinded_report,
)

from .safety_factories import criteria, make_event

REPORT_AT = datetime(2025, 3, 10, 20, 0, tzinfo=UTC)
JAN1, FEB1, MAR1 = (datetime(2025, m, 1, tzinfo=UTC) for m in (1, 2, 3))
MODULES = ["PERT", "EDDT", "EMDI"]
ARMS = ["personalized", "non_personalized"]
ARM_OF = {"P1": "personalized", "P2": "non_personalized", "P3": "non_personalized",
          "P4": "personalized"}
# days at risk up to REPORT_AT, by hand
P1_DAYS, P2_DAYS, P3_DAYS, P4_DAYS = 68 + 20 / 24, 30.0, 37 + 20 / 24, 9 + 20 / 24

ALLOCATIONS = [
    Allocation(participant="P1", module="PERT", allocated_at=JAN1),
    Allocation(participant="P2", module="PERT", allocated_at=JAN1,
               ended_at=JAN1 + timedelta(days=30)),  # withdrew
    Allocation(participant="P3", module="EDDT", allocated_at=FEB1),
    Allocation(participant="P4", module="EMDI", allocated_at=MAR1),
]
HOSP = criteria(hospitalisation=True)
EARLY = datetime(2025, 3, 8, 8, 0, tzinfo=UTC)
CASES = [
    open_case("c1", make_event(participant="P1"), recorded_by="n"),
    open_case("c2", make_event(participant="P1", seriousness=HOSP, severity="severe",
                               relatedness="probably"), recorded_by="n"),
    open_case("c3", make_event(participant="P3", severity="mild", relatedness="not"),
              recorded_by="n"),
    # never allocated: counted before allocation
    open_case("c4", make_event(participant="P5", seriousness=HOSP, severity="severe",
                               onset_date="2025-03-07", awareness_time=EARLY.isoformat()),
              recorded_by="n"),
    # onset before P4's allocation
    open_case("c5", make_event(participant="P4", onset_date="2025-02-20"), recorded_by="n"),
]


@pytest.fixture
def obligations(rules):
    obs = {o.key: o for c in CASES for o in plan_obligations(c, rules, [])}
    aware = CASES[1].latest.received_at
    obs["c2/sae_to_sponsor/v1"] = mark_sent(obs["c2/sae_to_sponsor/v1"], by="so",
                                            at=aware + timedelta(hours=2))
    obs["c2/susar_to_ethics/v1"] = acknowledge(obs["c2/susar_to_ethics/v1"], by="so",
                                               at=aware + timedelta(hours=3))
    obs["c4/sae_to_sponsor/v1"] = acknowledge(obs["c4/sae_to_sponsor/v1"], by="so",
                                              at=EARLY + timedelta(hours=1))
    return list(obs.values())


def blinded(rules, obligations):
    return blinded_report(CASES, ALLOCATIONS, obligations, rules=rules, modules=MODULES,
                          now=REPORT_AT)


def test_blinded_report_counts_events_by_module(rules, obligations) -> None:
    by = blinded(rules, obligations).by_module
    pert = by["PERT"]
    assert (pert.participants, pert.counts.events, pert.counts.participants_with_event) == (
        2, 2, 1)
    assert (pert.counts.serious, pert.counts.related) == (1, 2)
    assert pert.counts.by_severity == {"mild": 0, "moderate": 1, "severe": 1}
    assert pert.counts.by_relatedness["probably"] == 1
    assert pert.counts.by_seriousness_criterion["hospitalisation"] == 1
    assert by["EDDT"].counts.events == 1 and by["EDDT"].counts.by_severity["mild"] == 1
    assert by["EMDI"].counts.events == 0  # P4's only event began before allocation


def test_incidence_is_per_participant_year_of_time_at_risk(rules, obligations) -> None:
    report = blinded(rules, obligations)
    pert = report.by_module["PERT"]
    assert pert.participant_days == pytest.approx(P1_DAYS + P2_DAYS)
    assert pert.events_per_participant_year == pytest.approx(2 / ((P1_DAYS + P2_DAYS) / 365.25))
    assert pert.serious_per_participant_year == pytest.approx(
        1 / ((P1_DAYS + P2_DAYS) / 365.25))
    assert report.by_module["EMDI"].events_per_participant_year == 0
    overall = report.overall
    assert overall.participant_days == pytest.approx(P1_DAYS + P2_DAYS + P3_DAYS + P4_DAYS)
    assert (overall.participants, overall.counts.events) == (4, 3)


def test_events_before_allocation_are_counted_apart(rules, obligations) -> None:
    before = blinded(rules, obligations).before_allocation
    assert (before.events, before.serious, before.participants_with_event) == (2, 1, 2)


def test_blinded_report_lists_open_and_overdue_obligations(rules, obligations) -> None:
    ob = blinded(rules, obligations).obligations
    # c4's 24-hour clock ran out on 9 March; c2's was met; two SUSAR clocks still run
    assert ob.by_status == {"open": 1, "acknowledged": 1, "sent": 1, "overdue": 1}
    assert ob.sent_late == 0
    assert [(line.key, line.status.value) for line in ob.unsent] == [
        ("c4/sae_to_sponsor/v1", "overdue"),
        ("c4/susar_to_ethics/v1", "open"),
        ("c2/susar_to_ethics/v1", "acknowledged"),
    ]


def test_the_blinded_report_carries_no_arm(rules, obligations) -> None:
    text = blinded(rules, obligations).model_dump_json()
    assert all(arm not in text for arm in ARMS)


def test_a_module_without_participants_has_no_rate(rules) -> None:
    report = blinded_report(CASES, ALLOCATIONS[:1], [], rules=rules, modules=MODULES,
                            now=REPORT_AT)
    assert report.by_module["EDDT"].participant_days == 0
    assert report.by_module["EDDT"].events_per_participant_year is None


def unblinded(rules, obligations, arm_of=ARM_OF):
    return unblinded_report(CASES, ALLOCATIONS, obligations, rules=rules, modules=MODULES,
                            arms=ARMS, arm_of=arm_of, now=REPORT_AT)


def test_unblinded_report_splits_the_same_figures_by_arm(rules, obligations) -> None:
    report = unblinded(rules, obligations)
    pers, non = report.by_arm["personalized"], report.by_arm["non_personalized"]
    assert (pers.participants, pers.counts.events, pers.counts.serious) == (2, 2, 1)
    assert pers.participant_days == pytest.approx(P1_DAYS + P4_DAYS)
    assert (non.participants, non.counts.events, non.counts.serious) == (2, 1, 0)
    assert non.participant_days == pytest.approx(P2_DAYS + P3_DAYS)
    assert report.by_arm_and_module["personalized"]["PERT"].counts.events == 2
    assert report.by_arm_and_module["non_personalized"]["PERT"].counts.events == 0
    assert report.by_arm_and_module["non_personalized"]["EDDT"].counts.events == 1
    assert report.blinded == blinded(rules, obligations)


def test_unblinded_report_lists_every_sae_with_arm_and_module(rules, obligations) -> None:
    listing = unblinded(rules, obligations).sae_listing
    assert [(s.case_id, s.arm, s.module) for s in listing] == [
        ("c4", None, None), ("c2", "personalized", "PERT")]
    c2 = listing[1]
    assert c2.criteria == ("hospitalisation",) and c2.expected is False
    assert c2.versions == 1


def test_unblinded_report_refuses_an_incomplete_arm_map(rules, obligations) -> None:
    partial = {k: v for k, v in ARM_OF.items() if k != "P4"}
    with pytest.raises(IncompleteArmMap) as info:
        unblinded(rules, obligations, arm_of=partial)
    assert info.value.field == "arm_of" and "P4" in info.value.message
    with pytest.raises(IncompleteArmMap):
        unblinded(rules, obligations, arm_of={**ARM_OF, "P4": "placebo"})


def test_the_latest_version_of_a_case_is_what_counts(rules) -> None:
    case = follow_up(CASES[0], make_event(participant="P1", seriousness=HOSP,
                                          severity="severe"),
                     reason="admitted", received_at=REPORT_AT - timedelta(hours=1),
                     recorded_by="pi")
    report = blinded_report([case], ALLOCATIONS, [], rules=rules, modules=MODULES,
                            now=REPORT_AT)
    assert (report.overall.counts.events, report.overall.counts.serious) == (1, 1)
