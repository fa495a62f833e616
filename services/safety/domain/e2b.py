"""A case as structured JSON following the ICH E2B(R3) sections.

This is not the E2B XML message: it is a faithful JSON rendering of the sections a
sponsor's safety database imports: administration (C.1–C.3), study (C.5), patient (D),
reactions (E.i), the study intervention and its relatedness (G.k) and narrative (H).
Keys are `<E2B element number>_<element name>`. Unknown or withheld values use E2B
null flavours (`{"nullFlavor": "UNK" | "MSK" | "NI"}`). MedDRA codes appear only when
the sponsor supplied them; no MedDRA data ships. Severity and grade have no E2B element
and travel in the narrative.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.core.protocol.safety import SafetyRules
from services.core.protocol.trial import TrialInfo

from .cases import Case
from .events import AdverseEvent, assess, is_expected
from .vocabulary import ActionTaken, Outcome

FORMAT = "tailor-e2b-r3-json/1"
UNKNOWN: dict[str, str] = {"nullFlavor": "UNK"}
MASKED: dict[str, str] = {"nullFlavor": "MSK"}
NO_INFORMATION: dict[str, str] = {"nullFlavor": "NI"}

# E.i.7 outcome codes.
_OUTCOME = {Outcome.RECOVERED: 1, Outcome.RECOVERING: 2, Outcome.NOT_RECOVERED: 3,
            Outcome.RECOVERED_WITH_SEQUELAE: 4, Outcome.FATAL: 5, Outcome.UNKNOWN: 0}
# G.k.8 action taken; E2B has no code for modifying or pausing a psychotherapy.
_ACTION: dict[ActionTaken, int | None] = {
    ActionTaken.TREATMENT_DISCONTINUED: 1, ActionTaken.NONE: 4, ActionTaken.UNKNOWN: 0,
    ActionTaken.NOT_APPLICABLE: 9, ActionTaken.TREATMENT_MODIFIED: None,
    ActionTaken.TREATMENT_INTERRUPTED: None}


def _report_id(country: str, sender: str, case_id: str) -> str:
    org = "".join(ch for ch in sender.upper() if ch.isalnum())[:20] or "SENDER"
    return f"{country.upper()}-{org}-{case_id}"


def _administration(case: Case, report_id: str, sender: str, expedited: bool,
                    now: datetime) -> dict[str, Any]:
    e = case.latest.event
    return {
        "C.1.1_sender_safety_report_unique_identifier": report_id,
        "C.1.2_date_of_creation": now.isoformat(),
        "C.1.3_type_of_report": 2,  # report from study
        "C.1.4_date_report_first_received_from_source": case.versions[0].received_at.isoformat(),
        "C.1.5_date_of_most_recent_information": case.latest.received_at.isoformat(),
        "C.1.7_fulfil_local_criteria_for_expedited_report": expedited,
        "C.1.8.1_worldwide_unique_case_identification_number": report_id,
        "C.1.8.2_first_sender_of_this_case": 2,  # other (not a regulator)
        "C.2.r_primary_source": [{
            "C.2.r.1_reporter_name": e.reporter,
            "C.2.r.4_qualification": UNKNOWN,
            "C.2.r.5_primary_source_for_regulatory_purposes": 1,
        }],
        "C.3_sender": {"C.3.1_sender_type": 6, "C.3.2_sender_organisation": sender},
    }


def _study(trial: TrialInfo, country: str) -> dict[str, Any]:
    registrations = ([{"C.5.1.r.1_study_registration_number": trial.registration,
                       "C.5.1.r.2_study_registration_country": country.upper()}]
                     if trial.registration else [])
    return {
        "C.5.1.r_study_registration": registrations,
        "C.5.2_study_name": trial.title,
        "C.5.3_sponsor_study_number": trial.id,
        "C.5.4_study_type_where_reactions_events_were_observed": 1,  # clinical trial
    }


def _patient(e: AdverseEvent) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "D.1_patient_name_or_initials": MASKED,
        "D.1.1.4_patient_medical_record_number_investigation": e.participant,
    }
    if e.seriousness.death:
        patient["D.9.1_date_of_death"] = UNKNOWN
        patient["D.9.2.r_reported_cause_of_death"] = [
            {"D.9.2.r.2_reported_cause_of_death_free_text": e.verbatim_term}]
    return patient


def _reaction(e: AdverseEvent, language: str | None) -> dict[str, Any]:
    s, m = e.seriousness, e.meddra
    return {
        "E.i.1.1a_reaction_as_reported_by_primary_source": e.verbatim_term,
        "E.i.1.1b_language": language or UNKNOWN,
        "E.i.2.1a_meddra_version_for_reaction": m.version if m else NO_INFORMATION,
        "E.i.2.1b_reaction_meddra_code": (m.llt_code or m.pt_code) if m else NO_INFORMATION,
        "E.i.3.2a_results_in_death": s.death,
        "E.i.3.2b_life_threatening": s.life_threatening,
        "E.i.3.2c_caused_prolonged_hospitalisation": s.hospitalisation,
        "E.i.3.2d_disabling_incapacitating": s.disability,
        "E.i.3.2e_congenital_anomaly_birth_defect": s.congenital_anomaly,
        "E.i.3.2f_other_medically_important_condition": s.medically_important,
        "E.i.4_date_of_start_of_reaction": e.onset_date.isoformat(),
        "E.i.7_outcome_of_reaction_at_time_of_last_observation": _OUTCOME[e.outcome],
    }


def _intervention(e: AdverseEvent, intervention: str) -> dict[str, Any]:
    code = _ACTION[e.action_taken]
    return {
        "G.k.1_characterisation_of_drug_role": 1,  # suspect
        "G.k.2.2_medicinal_product_name_as_reported": intervention,
        "G.k.8_action_taken_with_drug": code if code is not None else NO_INFORMATION,
        "G.k.8_action_taken_as_reported": e.action_taken.value,
        "G.k.9.i_drug_reaction_matrix": [{
            "G.k.9.i.1_reaction_assessed": 1,
            "G.k.9.i.2.r_relatedness": [{
                "G.k.9.i.2.r.1_source_of_assessment": "investigator",
                "G.k.9.i.2.r.2_method_of_assessment": "global introspection",
                "G.k.9.i.2.r.3_result_of_assessment": e.relatedness.value,
            }],
        }],
    }


def _narrative(case: Case, rules: SafetyRules) -> dict[str, Any]:
    e = case.latest.event
    a = assess(e, rules)
    grade = f", grade {e.grade}" if e.grade else ""
    criteria = ", ".join(e.seriousness.criteria) or "none"
    summary = (
        f"{e.verbatim_term} (onset {e.onset_date.isoformat()}), severity {e.severity.value}"
        f"{grade}; seriousness criteria: {criteria}; relatedness to the study intervention: "
        f"{e.relatedness.value}; outcome: {e.outcome.value}; action taken: "
        f"{e.action_taken.value}.")
    history = " ".join(f"Version {v.number} ({v.received_at:%Y-%m-%d}): {v.reason}."
                       for v in case.versions)
    expected = is_expected(e, rules.expected_events)
    return {
        "H.1_case_narrative": " ".join(p for p in (e.narrative, summary, history) if p),
        "H.4_senders_comments": (
            f"{'Expected' if expected else 'Unexpected'} per the protocol's list"
            f"{' (investigator override)' if e.expected is not None else ''}; "
            f"{'related' if a.related else 'not related'} per the protocol's levels; "
            f"{'SUSAR' if a.susar else 'not a SUSAR'}."),
    }


def e2b_case(case: Case, *, rules: SafetyRules, trial: TrialInfo, sender: str,
             country: str, now: datetime, intervention: str = "study intervention",
             language: str | None = None) -> dict[str, Any]:
    """The latest version of `case` as an E2B(R3)-structured JSON document."""
    e = case.latest.event
    report_id = _report_id(country, sender, case.case_id)
    expedited = any(assess(e, rules).matches(r.when) for r in rules.rules)
    return {
        "format": FORMAT,
        "case_id": case.case_id,
        "case_version": case.latest.number,
        "administration": _administration(case, report_id, sender, expedited, now),
        "study": _study(trial, country),
        "patient": _patient(e),
        "reactions": [_reaction(e, language)],
        "drugs": [_intervention(e, intervention)],
        "narrative": _narrative(case, rules),
    }
