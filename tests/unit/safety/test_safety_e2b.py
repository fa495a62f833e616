"""E2B(R3)-structured JSON export of a case."""

from __future__ import annotations

import json
from datetime import timedelta

from services.safety.domain import e2b_case, follow_up, open_case

from .safety_factories import AWARE, NOW, criteria, make_event, serious_event


def export(case, protocol, **kwargs):
    return e2b_case(case, rules=protocol.safety, trial=protocol.trial,
                    sender="PerPAIN consortium", country="de", now=NOW, **kwargs)


def test_export_has_the_e2b_sections_and_is_json(protocol) -> None:
    doc = export(open_case("ae-P-001-1", serious_event(), recorded_by="n"), protocol)
    assert set(doc) >= {"administration", "study", "patient", "reactions", "drugs",
                        "narrative"}
    json.dumps(doc)  # plain JSON values only
    admin = doc["administration"]
    assert admin["C.1.1_sender_safety_report_unique_identifier"] == (
        "DE-PERPAINCONSORTIUM-ae-P-001-1")
    assert admin["C.1.3_type_of_report"] == 2
    assert admin["C.1.7_fulfil_local_criteria_for_expedited_report"] is True
    assert admin["C.2.r_primary_source"][0]["C.2.r.1_reporter_name"] == "Dr. Example"


def test_study_section_carries_the_registration(protocol) -> None:
    study = export(open_case("c1", serious_event(), recorded_by="n"), protocol)["study"]
    assert study["C.5.1.r_study_registration"] == [{
        "C.5.1.r.1_study_registration_number": "DRKS00022792",
        "C.5.1.r.2_study_registration_country": "DE"}]
    assert study["C.5.3_sponsor_study_number"] == "perpain-pilot"
    assert study["C.5.4_study_type_where_reactions_events_were_observed"] == 1


def test_reaction_carries_seriousness_outcome_and_no_invented_meddra(protocol) -> None:
    [r] = export(open_case("c1", serious_event(), recorded_by="n"), protocol)["reactions"]
    assert r["E.i.1.1a_reaction_as_reported_by_primary_source"] == (
        "panic attack after session")
    assert r["E.i.3.2c_caused_prolonged_hospitalisation"] is True
    assert r["E.i.3.2a_results_in_death"] is False
    assert r["E.i.4_date_of_start_of_reaction"] == "2025-03-09"
    assert r["E.i.7_outcome_of_reaction_at_time_of_last_observation"] == 1
    assert r["E.i.2.1b_reaction_meddra_code"] == {"nullFlavor": "NI"}


def test_sponsor_supplied_meddra_codes_are_exported(protocol) -> None:
    event = serious_event(meddra={"version": "27.0", "llt_code": "10033664"})
    [r] = export(open_case("c1", event, recorded_by="n"), protocol)["reactions"]
    assert (r["E.i.2.1a_meddra_version_for_reaction"], r["E.i.2.1b_reaction_meddra_code"]) == (
        "27.0", "10033664")


def test_a_fatal_case_fills_the_death_section(protocol) -> None:
    event = serious_event(seriousness=criteria(death=True), outcome="fatal")
    doc = export(open_case("c1", event, recorded_by="n"), protocol)
    assert doc["patient"]["D.9.2.r_reported_cause_of_death"][0][
        "D.9.2.r.2_reported_cause_of_death_free_text"] == "panic attack after session"
    assert doc["reactions"][0]["E.i.7_outcome_of_reaction_at_time_of_last_observation"] == 5


def test_patient_identity_is_masked_but_the_investigation_number_kept(protocol) -> None:
    patient = export(open_case("c1", serious_event(), recorded_by="n"), protocol)["patient"]
    assert patient["D.1_patient_name_or_initials"] == {"nullFlavor": "MSK"}
    assert patient["D.1.1.4_patient_medical_record_number_investigation"] == "P-001"
    assert "D.9.1_date_of_death" not in patient


def test_relatedness_and_action_go_to_the_intervention_section(protocol) -> None:
    event = serious_event(action_taken="treatment_discontinued", relatedness="probably")
    [g] = export(open_case("c1", event, recorded_by="n"), protocol,
                 intervention="study psychotherapy module")["drugs"]
    assert g["G.k.2.2_medicinal_product_name_as_reported"] == "study psychotherapy module"
    assert g["G.k.8_action_taken_with_drug"] == 1
    assessment = g["G.k.9.i_drug_reaction_matrix"][0]["G.k.9.i.2.r_relatedness"][0]
    assert assessment["G.k.9.i.2.r.3_result_of_assessment"] == "probably"


def test_narrative_summarises_the_latest_version_and_the_history(protocol) -> None:
    case = open_case("c1", make_event(grade=2), recorded_by="n")
    case = follow_up(case, serious_event(narrative="Admitted after session 4.", grade=3),
                     reason="admission report", received_at=AWARE + timedelta(hours=1),
                     recorded_by="pi")
    doc = export(case, protocol)
    text = doc["narrative"]["H.1_case_narrative"]
    assert text.startswith("Admitted after session 4.")
    assert "severity severe, grade 3" in text and "hospitalisation" in text
    assert "Version 1 (2025-03-10): initial report." in text
    assert "Version 2 (2025-03-10): admission report." in text
    assert doc["case_version"] == 2
    assert "SUSAR" in doc["narrative"]["H.4_senders_comments"]
    assert doc["administration"]["C.1.5_date_of_most_recent_information"] == (
        (AWARE + timedelta(hours=1)).isoformat())


def test_a_non_serious_case_is_not_expedited(protocol) -> None:
    doc = export(open_case("c1", make_event(), recorded_by="n"), protocol)
    assert doc["administration"]["C.1.7_fulfil_local_criteria_for_expedited_report"] is False
