"""Each consumer receives only the saves and fields its rules read (data minimisation)."""

from __future__ import annotations

import pytest

from services.core.events import FormSaved
from services.core.events.form_fields import form_save_consumers, per_consumer
from services.core.protocol import TrialProtocol, load_protocol

CONTACT = {"cons_email": "a@example.org", "cons_mobile": "+4917012345",
           "cons_address": "Weg 1", "cons_language": "en", "cons_timezone": "Europe/Berlin",
           "cons_optout___sms": "1", "cons_date": "2025-03-01"}
BASELINE_ROW = {"record_id": "P1", "cons_given": "1", "scr_eligible": "1", "scr_diagnosis": "x",
                "dem_age": "50", "dem_sex": "1", "mpid_1_1": "3", "mpid_3_18": "2",
                "hads_1": "2", "mpid_complete": "2", "consent_complete": "2",
                "wd_withdrawn": "", **CONTACT}
AE_OWN = ["ae_term", "ae_serious", "ae_narrative"]


@pytest.fixture(scope="module")
def protocol() -> TrialProtocol:
    return load_protocol("protocols/perpain-pilot.yaml")


def _save(instrument: str, event: str, fields: dict[str, str]) -> FormSaved:
    return FormSaved(project_id=101, record="P1", event=event, instrument=instrument,
                     complete_status=2, fields=fields, trigger="det")


def test_a_baseline_save_gives_allocation_the_mpid_and_notifications_the_contacts(
        protocol: TrialProtocol) -> None:
    cuts = per_consumer(_save("consent", "t0_baseline", BASELINE_ROW), protocol, ["cons_given"])
    # safety reads AE/NEQ/INEP only; reports every save, with its few flow fields
    assert set(cuts) == {"allocation", "notifications", "reports"}
    allocation = cuts["allocation"].fields
    assert {"mpid_1_1", "mpid_3_18", "dem_age", "dem_sex", "cons_given", "scr_eligible",
            "mpid_complete", "consent_complete", "wd_withdrawn"} <= set(allocation)
    assert not set(CONTACT) & set(allocation)
    assert "hads_1" not in allocation and "scr_diagnosis" not in allocation
    notifications = cuts["notifications"].fields
    assert set(CONTACT) - {"cons_date"} <= set(notifications)
    assert not any(k.startswith("mpid_") and k != "mpid_complete" for k in notifications)
    assert "dem_age" not in notifications and "cons_given" not in notifications
    reports = cuts["reports"].fields
    assert set(reports) == {"cons_given", "scr_eligible", "wd_withdrawn", "cons_date"}


def test_later_events_carry_no_contacts_and_allocation_sees_only_withdrawals(
        protocol: TrialProtocol) -> None:
    row = {"pgic_rating": "5", "pgic_complete": "2", "wd_withdrawn": "1", **CONTACT}
    cuts = per_consumer(_save("pgic", "week_4_arm_1", row), protocol, ["pgic_rating"])
    assert set(cuts) == {"notifications", "reports"}
    assert cuts["notifications"].fields == {"pgic_complete": "2", "wd_withdrawn": "1"}
    assert cuts["reports"].fields == {"wd_withdrawn": "1"}
    withdrawal = per_consumer(_save("withdrawal", "week_4", row), protocol, ["wd_withdrawn"])
    assert withdrawal["allocation"].fields == {"wd_withdrawn": "1"}


def test_safety_gets_the_ae_instrument_own_fields_only(protocol: TrialProtocol) -> None:
    row = {"ae_term": "headache", "ae_serious": "0", "adverse_event_complete": "2",
           "dem_age": "50", **CONTACT}
    cuts = per_consumer(_save("adverse_event", "week_4", row), protocol, AE_OWN)
    assert cuts["safety"].fields == {"ae_term": "headache", "ae_serious": "0",
                                     "adverse_event_complete": "2"}
    assert not set(CONTACT) & set(cuts["notifications"].fields)


@pytest.mark.parametrize(("name", "without"), [("perpain-pilot", "randomization"),
                                              ("rush-mechanisms", "allocation"),
                                              ("partners4pain", "allocation"),
                                              ("iact-mmrp", "allocation")])
def test_the_gateway_needs_the_keys_of_exactly_the_services_its_cuts_go_to(
        name: str, without: str) -> None:
    """A personalized design seals its baseline to allocation, any other to randomization;
    the gateway loads only those services' bus keys (a deployment provides no others)."""
    trial = load_protocol(f"protocols/{name}.yaml")
    consumers = form_save_consumers(trial)
    assert without not in consumers
    baseline = trial.redcap.unique_event_name(trial.redcap.baseline_event)
    every_field = {f: "1" for f in trial.redcap.baseline_forms}
    for form in trial.redcap.baseline_forms:
        cuts = per_consumer(_save(form, baseline, every_field), trial, [])
        assert set(cuts) <= set(consumers)


def test_a_smart_design_gives_randomization_the_stage_rule_fields_and_withdrawals() -> None:
    """pcst-smart: the baseline pain at baseline, the week-8 pain with its forms' completion
    and the withdrawal flag in the stage event, the withdrawal form in any other event;
    nothing else (no contacts, no other measures)."""
    trial = load_protocol("protocols/pcst-smart.yaml")
    baseline = _save("baseline_measures", "t0_baseline_arm_1", {
        "peg_pain": "8", "peg_enjoyment": "5", "cons_given": "1", "scr_eligible": "1",
        "baseline_measures_complete": "2", **CONTACT})
    cut = per_consumer(baseline, trial, [])["randomization"].fields
    assert cut["peg_pain"] == "8" and "peg_enjoyment" not in cut
    assert not set(CONTACT) & set(cut)
    week8 = _save("peg_followup", "week_8_arm_1", {
        "pegf_pain": "5", "pegf_enjoyment": "4", "peg_followup_complete": "2",
        "wd_withdrawn": "0", "s2_option": "x", **CONTACT})
    assert per_consumer(week8, trial, [])["randomization"].fields == {
        "pegf_pain": "5", "peg_followup_complete": "2", "wd_withdrawn": "0"}
    later = _save("peg_followup", "month_6_arm_1", {"pegf_pain": "5", "wd_withdrawn": "0"})
    assert "randomization" not in per_consumer(later, trial, [])
    withdrawal = _save("withdrawal", "month_6_arm_1", {"pegf_pain": "5", "wd_withdrawn": "1"})
    assert per_consumer(withdrawal, trial, [])["randomization"].fields == {"wd_withdrawn": "1"}
    # Without stages, only the withdrawal form reaches randomization outside the baseline.
    p4p = load_protocol("protocols/partners4pain.yaml")
    assert per_consumer(_save("withdrawal", "month_2_arm_1", {"wd_withdrawn": "1"}), p4p,
                        [])["randomization"].fields == {"wd_withdrawn": "1"}
    assert "randomization" not in per_consumer(
        _save("peg_followup", "month_2_arm_1", {"wd_withdrawn": "1"}), p4p, [])


def test_under_group_randomization_randomization_gets_the_group_field_and_no_contacts() -> None:
    trial = load_protocol("protocols/iact-mmrp.yaml")
    baseline = trial.redcap.unique_event_name(trial.redcap.baseline_event)
    row = {"scr_mmrp_group": "G2011-03", "scr_eligible": "1", "cons_given": "1",
           "screening_complete": "2", "dem_age": "41", "peg_pain": "7", **CONTACT}
    cut = per_consumer(_save("screening", baseline, row), trial, [])["randomization"]
    assert cut.fields == {"scr_mmrp_group": "G2011-03", "scr_eligible": "1", "cons_given": "1",
                          "screening_complete": "2"}
    partners = load_protocol("protocols/partners4pain.yaml")
    other = per_consumer(_save("screening", baseline, row), partners, [])["randomization"]
    assert "scr_mmrp_group" not in other.fields


def test_a_diary_answer_goes_to_notifications_alone_without_its_answers(
        protocol: TrialProtocol) -> None:
    """Notifications counts the answer from its instrument, instance and status; reports
    gets the adherence counted from notifications, and nobody gets the answers."""
    row = {"record_id": "P1", "redcap_repeat_instrument": "diary", "redcap_repeat_instance": "7",
           "diary_mood": "5", "diary_pleasant_what": "a walk", "diary_complete": "2"}
    saved = _save("diary", "diary", row).model_copy(update={"repeat_instance": 7})
    cuts = per_consumer(saved, protocol, ["diary_mood", "diary_pleasant_what"])
    assert set(cuts) == {"notifications"}
    note = cuts["notifications"]
    assert (note.instrument, note.repeat_instance, note.complete_status) == ("diary", 7, 2)
    assert note.fields == {}


def test_a_design_without_prediction_gives_randomization_its_factors_and_any_withdrawal(
        ) -> None:
    """rush-mechanisms: the baseline with site and interference; a later event's save only
    when it is the withdrawal form, cut to the withdrawal flag (as allocation's)."""
    rush = load_protocol("protocols/rush-mechanisms.yaml")
    row = {"scr_site": "1", "scr_pain_interference": "7", "cons_given": "1",
           "scr_eligible": "1", "wd_withdrawn": "1", "peg_followup_complete": "2", **CONTACT}
    baseline = per_consumer(_save("screening", "t0_baseline_arm_1", row), rush, [])
    assert {"scr_site", "scr_pain_interference", "wd_withdrawn"} <= set(
        baseline["randomization"].fields)
    assert not set(CONTACT) & set(baseline["randomization"].fields)
    withdrawal = per_consumer(_save("withdrawal", "month_6_arm_1", row), rush, ["wd_withdrawn"])
    assert withdrawal["randomization"].fields == {"wd_withdrawn": "1"}
    later = per_consumer(_save("peg_followup", "month_6_arm_1", row), rush, [])
    assert "randomization" not in later


def test_a_site_from_the_data_access_group_reaches_randomization() -> None:
    rush = load_protocol("protocols/rush-mechanisms.yaml")
    by_dag = rush.model_copy(update={"randomization": rush.randomization.model_copy(
        update={"site": type(rush.randomization.site)()})})
    row = {"scr_site": "1", "redcap_data_access_group": "site_2", "scr_pain_interference": "7"}
    cut = per_consumer(_save("screening", "t0_baseline_arm_1", row), by_dag, [])
    assert cut["randomization"].fields["redcap_data_access_group"] == "site_2"
    assert "scr_site" not in cut["randomization"].fields
