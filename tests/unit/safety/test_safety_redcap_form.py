"""REDCap adverse_event / NEQ / INEP forms → domain inputs, problems named by REDCap field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.safety.domain import (
    ActionTaken,
    Attribution,
    InvalidAdverseEvent,
    InvalidQuestionnaire,
    Outcome,
    Relatedness,
    Severity,
    adverse_event_from_redcap,
    inep_from_redcap,
    neq_from_redcap,
)

from .safety_factories import NOW

BERLIN = "Europe/Berlin"


def record(**overrides: str) -> dict[str, str]:
    """A saved adverse_event instance as REDCap exports it (raw codes, blanks as '')."""
    data = {
        "record_id": "P-007", "redcap_repeat_instrument": "adverse_event",
        "redcap_repeat_instance": "1",
        "ae_onset_date": "2025-03-08", "ae_aware_datetime": "2025-03-09 10:15",
        "ae_term": "Hospitalised for suicidal crisis", "ae_severity": "3", "ae_grade": "",
        "ae_serious": "1", "ae_sc_death": "0", "ae_sc_life_threat": "0", "ae_sc_hosp": "1",
        "ae_sc_disability": "0", "ae_sc_congenital": "0", "ae_sc_med_important": "0",
        "ae_related": "3", "ae_expected": "", "ae_outcome": "2", "ae_action": "3",
        "ae_reporter": "Study nurse", "ae_meddra_version": "", "ae_meddra_llt": "",
        "ae_meddra_pt": "", "ae_narrative": "", "ae_followup_reason": "",
        "adverse_event_complete": "2",
    }
    data.update(overrides)
    return data


def from_redcap(rules, rec: dict[str, str], now: datetime = NOW):
    return adverse_event_from_redcap(rec, participant="P-007", form=rules.redcap_form,
                                     timezone=BERLIN, now=now)


def problems(rules, rec: dict[str, str]) -> dict[str, str]:
    with pytest.raises(InvalidAdverseEvent) as info:
        from_redcap(rules, rec)
    return {p.field: p.message for p in info.value.problems}


def test_a_saved_form_maps_to_the_event_with_codes_decoded(rules) -> None:
    got = from_redcap(rules, record())
    e = got.event
    assert e.participant == "P-007"
    assert e.awareness_time == datetime(2025, 3, 9, 9, 15, tzinfo=UTC)  # CET = UTC+1
    assert e.severity is Severity.SEVERE and e.grade is None
    assert e.seriousness.criteria == ("hospitalisation",)
    assert e.relatedness is Relatedness.POSSIBLY
    assert e.outcome is Outcome.RECOVERING
    assert e.action_taken is ActionTaken.TREATMENT_INTERRUPTED
    assert e.expected is None and e.meddra is None and e.narrative is None
    assert got.follow_up_reason is None


def test_summer_time_awareness_converts_with_the_summer_offset(rules) -> None:
    rec = record(ae_aware_datetime="2025-07-01 10:15:30", ae_onset_date="2025-06-30")
    e = from_redcap(rules, rec, now=datetime(2025, 7, 2, tzinfo=UTC)).event
    assert e.awareness_time == datetime(2025, 7, 1, 8, 15, 30, tzinfo=UTC)


def test_optional_fields_are_read_when_filled(rules) -> None:
    got = from_redcap(rules, record(
        ae_grade="3", ae_expected="0", ae_meddra_version="27.0", ae_meddra_pt="10042458",
        ae_narrative="Admitted overnight.", ae_followup_reason="discharge letter received"))
    e = got.event
    assert e.grade == 3 and e.expected is False
    assert e.meddra is not None and e.meddra.pt_code == "10042458"
    assert e.narrative == "Admitted overnight."
    assert got.follow_up_reason == "discharge letter received"


def test_non_serious_form_with_hidden_criteria_is_not_serious(rules) -> None:
    blank = dict.fromkeys(["ae_sc_death", "ae_sc_life_threat", "ae_sc_hosp",
                           "ae_sc_disability", "ae_sc_congenital", "ae_sc_med_important"], "")
    e = from_redcap(rules, record(ae_serious="0", **blank)).event
    assert not e.seriousness.serious


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"ae_severity": "7"}, "ae_severity", "unknown code"),
    ({"ae_related": "x"}, "ae_related", "unknown code"),
    ({"ae_outcome": "8"}, "ae_outcome", "unknown code"),
    ({"ae_action": "5"}, "ae_action", "unknown code"),
    ({"ae_expected": "2"}, "ae_expected", "unknown code"),
    ({"ae_grade": "three"}, "ae_grade", "whole number"),
    ({"ae_grade": "9"}, "ae_grade", "less than or equal to 5"),
    ({"ae_onset_date": "08.03.2025"}, "ae_onset_date", "YYYY-MM-DD"),
    ({"ae_aware_datetime": "2025-03-09T10:15Z"}, "ae_aware_datetime", "YYYY-MM-DD HH:MM"),
    ({"ae_term": ""}, "ae_term", "required"),
    ({"ae_reporter": " "}, "ae_reporter", "required"),
    ({"ae_serious": ""}, "ae_serious", "required"),
    ({"ae_sc_hosp": ""}, "ae_sc_hosp", "required when ae_serious is yes"),
    ({"ae_sc_hosp": "0"}, "ae_serious", "no seriousness criterion"),
    ({"ae_serious": "0"}, "ae_sc_hosp", "ae_serious is no"),
    ({"ae_meddra_version": "27.0"}, "ae_meddra_llt", "llt_code or pt_code"),
    ({"ae_outcome": "5"}, "ae_sc_death", "death must be true"),
    ({"ae_onset_date": "2025-03-11"}, "ae_onset_date", "after awareness"),
])
def test_a_bad_form_names_the_redcap_field(rules, overrides, field: str, words: str) -> None:
    found = problems(rules, record(**overrides))
    assert words in found[field], found


def test_an_unreadable_value_is_reported_once(rules) -> None:
    found = problems(rules, record(ae_severity="7"))
    assert list(found) == ["ae_severity"]


def test_neq_items_read_with_impact_and_attribution(rules) -> None:
    rec = {"neq_1": "1", "neq_1_impact": "3", "neq_1_attr": "1",
           "neq_2": "0", "neq_2_impact": "", "neq_2_attr": "",
           "neq_3": "1", "neq_3_impact": "2", "neq_3_attr": "2", "neq_4": ""}
    answers = neq_from_redcap(rec, form=rules.redcap_form, n_items=rules.neq_items)
    assert set(answers) == {1, 2, 3}  # item 4 unanswered
    assert answers[1].occurred and answers[1].impact == 3
    assert answers[1].attribution is Attribution.TREATMENT
    assert not answers[2].occurred and answers[2].impact is None
    assert answers[3].attribution is Attribution.OTHER


def test_neq_unknown_codes_are_named(rules) -> None:
    with pytest.raises(InvalidQuestionnaire) as info:
        neq_from_redcap({"neq_5": "3", "neq_6": "1", "neq_6_attr": "9"},
                        form=rules.redcap_form, n_items=32)
    assert {p.field for p in info.value.problems} == {"neq_5", "neq_6_attr"}


def test_inep_bipolar_codes_are_shifted_and_unipolar_kept(rules) -> None:
    design = rules.inep
    bi, uni = design.bipolar_items[0], design.unipolar_items[0]
    rec = {f"inep_{bi}": "1", f"inep_{bi}_attr": "1", f"inep_{uni}": "2"}
    answers = inep_from_redcap(rec, form=rules.redcap_form, design=design)
    assert answers[bi].value == 1 - design.bipolar_code_offset
    assert answers[bi].attribution is Attribution.TREATMENT
    assert answers[uni].value == 2 and answers[uni].attribution is None


def test_inep_non_numeric_value_is_named(rules) -> None:
    with pytest.raises(InvalidQuestionnaire) as info:
        inep_from_redcap({"inep_1": "worse"}, form=rules.redcap_form, design=rules.inep)
    assert info.value.fields == ["inep_1"]
