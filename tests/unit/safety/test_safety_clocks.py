"""Reporting clocks from the protocol rules: 24 h, 15 days, 7+8 days, restarts, status."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from services.core.protocol import ProtocolError, parse_protocol
from services.core.protocol.safety import SafetyRules
from services.safety.domain import (
    AdverseEvent,
    ObligationStateError,
    ObligationStatus,
    acknowledge,
    due_for_escalation,
    earliest_open_deadline,
    follow_up,
    mark_escalated,
    mark_sent,
    open_case,
    plan_obligations,
    sent_late,
    status,
)

from .safety_factories import AWARE, criteria, make_event, serious_event

H, DAY = timedelta(hours=1), timedelta(days=1)
SUSAR_WHEN = {"serious": True, "related": True, "unexpected": True}


def drug_trial(base: SafetyRules) -> SafetyRules:
    """A drug trial's rules, by configuration only: fatal or life-threatening SUSARs
    within 7 days plus the complete report 8 days later; other SUSARs within 15 days."""
    data = base.model_dump()
    data["contacts"] = [*data["contacts"], {"role": "competent_authority",
                                            "name": "Authority", "email": "ca@x.example"}]
    data["rules"] = [
        {"key": "sae_to_sponsor", "when": {"serious": True},
         "recipients": ["sponsor"], "deadline_hours": 24},
        {"key": "susar_fatal_initial", "when": {**SUSAR_WHEN, "fatal_or_life_threatening": True},
         "recipients": ["competent_authority", "ethics_committee"], "deadline_hours": 7 * 24},
        {"key": "susar_fatal_complete",
         "when": {**SUSAR_WHEN, "fatal_or_life_threatening": True},
         "recipients": ["competent_authority", "ethics_committee"],
         "deadline_hours": (7 + 8) * 24},
        {"key": "susar_other", "when": {**SUSAR_WHEN, "fatal_or_life_threatening": False},
         "recipients": ["competent_authority", "ethics_committee"], "deadline_hours": 15 * 24,
         "restart_on_follow_up": True},
    ]
    return SafetyRules.model_validate(data)


def plan(event: AdverseEvent, rules: SafetyRules) -> dict[str, datetime]:
    case = open_case("c1", event, recorded_by="nurse")
    return {o.rule_key: o.deadline_at for o in plan_obligations(case, rules, [])}


def test_every_sae_is_due_to_the_sponsor_24_hours_after_awareness(rules) -> None:
    event = serious_event(relatedness="not")
    [o] = plan_obligations(open_case("c1", event, recorded_by="nurse"), rules, [])
    assert o.rule_key == "sae_to_sponsor"
    assert o.recipients == ("sponsor", "principal_investigator")
    assert (o.started_at, o.deadline_at) == (AWARE, AWARE + 24 * H)
    assert o.escalate_at == AWARE + 12 * H
    assert (o.version, o.follow_up, o.key) == (1, False, "c1/sae_to_sponsor/v1")


def test_a_susar_is_also_due_to_the_ethics_committee_within_15_days(rules) -> None:
    assert plan(serious_event(), rules) == {
        "sae_to_sponsor": AWARE + 24 * H, "susar_to_ethics": AWARE + 15 * DAY}


@pytest.mark.parametrize(("overrides", "rule_keys"), [
    ({"relatedness": "unlikely"}, {"sae_to_sponsor"}),
    ({"expected": True}, {"sae_to_sponsor"}),
    ({"verbatim_term": "transient increase of distress"}, {"sae_to_sponsor"}),
    ({"relatedness": "definitely"}, {"sae_to_sponsor", "susar_to_ethics"}),
    ({"seriousness": criteria(), "severity": "severe"}, set()),
])
def test_which_rules_apply_follows_the_assessment(rules, overrides, rule_keys) -> None:
    assert set(plan(serious_event(**overrides), rules)) == rule_keys


def test_drug_trial_fatal_susar_is_due_in_7_days_with_the_complete_report_by_day_15(
        rules) -> None:
    fatal = serious_event(seriousness=criteria(death=True), outcome="fatal")
    assert plan(fatal, drug_trial(rules)) == {
        "sae_to_sponsor": AWARE + DAY,
        "susar_fatal_initial": AWARE + 7 * DAY,
        "susar_fatal_complete": AWARE + 15 * DAY}


def test_drug_trial_life_threatening_susar_counts_as_fatal_or_life_threatening(rules) -> None:
    lt = serious_event(seriousness=criteria(life_threatening=True))
    assert plan(lt, drug_trial(rules))["susar_fatal_initial"] == AWARE + 7 * DAY


def test_drug_trial_other_susar_is_due_in_15_days(rules) -> None:
    assert plan(serious_event(), drug_trial(rules)) == {
        "sae_to_sponsor": AWARE + DAY, "susar_other": AWARE + 15 * DAY}


def test_drug_trial_serious_unrelated_event_goes_to_the_sponsor_only(rules) -> None:
    assert set(plan(serious_event(relatedness="not"), drug_trial(rules))) == {"sae_to_sponsor"}


def test_significant_follow_up_restarts_only_the_rules_that_say_so(rules) -> None:
    case = open_case("c1", serious_event(), recorded_by="nurse")
    first = plan_obligations(case, rules, [])
    received = AWARE + 3 * DAY
    worse = serious_event(seriousness=criteria(hospitalisation=True, life_threatening=True))
    case = follow_up(case, worse, reason="ICU transfer", received_at=received,
                     recorded_by="pi")
    [restart] = plan_obligations(case, rules, first)
    assert restart.rule_key == "susar_to_ethics" and restart.follow_up
    assert (restart.version, restart.started_at) == (2, received)
    assert restart.deadline_at == received + 15 * DAY
    # the earlier report is still owed at its own deadline
    assert {o.deadline_at for o in first} == {AWARE + DAY, AWARE + 15 * DAY}


def test_follow_up_without_significant_information_restarts_nothing(rules) -> None:
    case = open_case("c1", serious_event(), recorded_by="nurse")
    first = plan_obligations(case, rules, [])
    case = follow_up(case, serious_event(narrative="discharged home", outcome="recovered"),
                     reason="discharge letter", received_at=AWARE + DAY, recorded_by="pi")
    assert plan_obligations(case, rules, first) == []


def test_drug_trial_non_fatal_susar_turning_fatal_starts_the_7_day_clock_then(rules) -> None:
    drug = drug_trial(rules)
    case = open_case("c1", serious_event(), recorded_by="nurse")
    first = plan_obligations(case, drug, [])
    died = AWARE + 4 * DAY
    case = follow_up(case, serious_event(seriousness=criteria(death=True), outcome="fatal"),
                     reason="participant died", received_at=died, recorded_by="pi")
    new = {o.rule_key: o.deadline_at for o in plan_obligations(case, drug, first)}
    assert new == {"susar_fatal_initial": died + 7 * DAY,
                   "susar_fatal_complete": died + 15 * DAY}


def test_an_event_becoming_serious_starts_its_clock_at_the_follow_up(rules) -> None:
    case = open_case("c1", make_event(relatedness="not"), recorded_by="nurse")
    assert plan_obligations(case, rules, []) == []
    learned = AWARE + 2 * DAY
    case = follow_up(case, serious_event(relatedness="not"), reason="admitted to hospital",
                     received_at=learned, recorded_by="nurse")
    [o] = plan_obligations(case, rules, [])
    assert (o.rule_key, o.version, o.follow_up) == ("sae_to_sponsor", 2, False)
    assert o.deadline_at == learned + 24 * H


def test_planning_the_same_version_twice_creates_nothing_new(rules) -> None:
    case = open_case("c1", serious_event(), recorded_by="nurse")
    first = plan_obligations(case, rules, [])
    assert plan_obligations(case, rules, first) == []


def test_obligations_of_other_cases_do_not_count(rules) -> None:
    other = plan_obligations(open_case("c0", serious_event(), recorded_by="n"), rules, [])
    case = open_case("c1", serious_event(), recorded_by="nurse")
    assert len(plan_obligations(case, rules, other)) == 2


@pytest.fixture
def sponsor_obligation(rules):
    [o] = plan_obligations(open_case("c1", serious_event(relatedness="not"),
                                     recorded_by="nurse"), rules, [])
    return o


def test_status_runs_open_acknowledged_overdue_sent(sponsor_obligation) -> None:
    o = sponsor_obligation
    deadline = AWARE + 24 * H
    assert status(o, AWARE + H) is ObligationStatus.OPEN
    acked = acknowledge(o, by="safety officer", at=AWARE + 2 * H)
    assert status(acked, AWARE + 3 * H) is ObligationStatus.ACKNOWLEDGED
    assert status(acked, deadline) is ObligationStatus.ACKNOWLEDGED  # deadline itself in time
    assert status(acked, deadline + timedelta(seconds=1)) is ObligationStatus.OVERDUE
    sent = mark_sent(acked, by="safety officer", at=deadline + H)
    assert status(sent, deadline + 2 * H) is ObligationStatus.SENT
    assert sent_late(sent) and (sent.sent_by, sent.acknowledged_by) == ("safety officer",) * 2


def test_sent_in_time_is_not_late(sponsor_obligation) -> None:
    sent = mark_sent(sponsor_obligation, by="so", at=AWARE + 24 * H)
    assert not sent_late(sent)


def test_escalation_falls_due_at_the_protocol_fraction_unless_acknowledged(
        sponsor_obligation) -> None:
    o = sponsor_obligation
    at = AWARE + 12 * H
    assert due_for_escalation([o], at - timedelta(seconds=1)) == []
    assert due_for_escalation([o], at) == [o]
    assert due_for_escalation([acknowledge(o, by="so", at=AWARE + H)], at) == []
    assert due_for_escalation([mark_sent(o, by="so", at=AWARE + H)], at) == []
    escalated = mark_escalated(o, at=at)
    assert due_for_escalation([escalated], at + H) == []
    with pytest.raises(ObligationStateError):
        mark_escalated(escalated, at=at + H)


@pytest.mark.parametrize(("action", "field"), [
    (lambda o: acknowledge(mark_sent(o, by="a", at=AWARE + H), by="b", at=AWARE + 2 * H),
     "acknowledged_at"),
    (lambda o: acknowledge(acknowledge(o, by="a", at=AWARE + H), by="b", at=AWARE + 2 * H),
     "acknowledged_at"),
    (lambda o: mark_sent(mark_sent(o, by="a", at=AWARE + H), by="b", at=AWARE + 2 * H),
     "sent_at"),
    (lambda o: acknowledge(o, by=" ", at=AWARE + H), "acknowledged_by"),
    (lambda o: mark_sent(o, by="", at=AWARE + H), "sent_by"),
    (lambda o: mark_sent(o, by="a", at=AWARE - H), "sent_at"),
    (lambda o: acknowledge(o, by="a", at=(AWARE + H).replace(tzinfo=None)), "acknowledged_at"),
])
def test_impossible_transitions_are_refused_naming_the_field(
        sponsor_obligation, action, field: str) -> None:
    with pytest.raises(ObligationStateError) as info:
        action(sponsor_obligation)
    assert info.value.field == field


def test_earliest_open_deadline_ignores_sent_obligations(rules) -> None:
    obs = plan_obligations(open_case("c1", serious_event(), recorded_by="n"), rules, [])
    sponsor = next(o for o in obs if o.rule_key == "sae_to_sponsor")
    ethics = next(o for o in obs if o.rule_key == "susar_to_ethics")
    assert earliest_open_deadline(obs) == sponsor.deadline_at
    assert earliest_open_deadline([mark_sent(sponsor, by="so", at=AWARE + H), ethics]) == (
        ethics.deadline_at)
    assert earliest_open_deadline([]) is None


@pytest.mark.parametrize(("edit", "words"), [
    (lambda s: s["rules"][0].update(when={}), "at least one criterion"),
    (lambda s: s["rules"][0].update(recipients=["coroner"]), "coroner"),
    (lambda s: s["rules"][1].update(key=s["rules"][0]["key"]), "duplicate rule keys"),
    (lambda s: s["inep"].update(unipolar_items=[15, 16]), "exactly items 1..21"),
    (lambda s: s["inep"]["subscales"].update(work=[22]), "subscales.work"),
    (lambda s: s.update(escalate_at_fraction=1.0), "escalate_at_fraction"),
])
def test_a_wrong_safety_section_fails_start_up(protocol, edit, words: str) -> None:
    data = protocol.model_dump(mode="json")
    edit(data["safety"])
    with pytest.raises(ProtocolError, match=words):
        parse_protocol(data)
