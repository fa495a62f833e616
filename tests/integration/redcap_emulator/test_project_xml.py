"""Projects from a REDCap project XML (CDISC ODM) with a super token, as REDCap's API
accepts it, and `content=project_xml` exports that re-create the same project."""

from __future__ import annotations

import pytest
import redcap
from redcap import RedcapError
from redcap.request import _ContentConfig, _RCRequest

from .conftest import FIXTURES, SUPER_TOKEN, PerpainProject, StatusLog, error_message


def create_project(api_url: str, title: str, odm: str | None, statuses: StatusLog,
                   token: str = SUPER_TOKEN) -> str:
    """PyCap's own request layer (its Project refuses 64-character super tokens); the token
    comes back as plain text, errors as XML (returnFormat)."""
    payload = {"token": token, "content": "project", "format": "json", "returnFormat": "xml",
               "data": f'[{{"project_title": "{title}", "purpose": "2"}}]'}
    if odm is not None:
        payload["odm"] = odm
    request = _RCRequest(api_url, payload, _ContentConfig(False, False))
    return str(request.execute(verify_ssl=True, return_headers=False, file=None,
                               hooks={"response": [statuses.hook]}))


def test_project_xml_with_metadata_and_data_becomes_a_project(perpain: PerpainProject) -> None:
    odm = (FIXTURES / "wellbeing_project.xml").read_text(encoding="utf-8")
    token = create_project(perpain.api_url, "Wellbeing copy", odm, perpain.statuses)
    assert len(token) == 32
    wellbeing = perpain.project(token)
    assert wellbeing.export_project_info()["project_title"] == "Wellbeing copy"
    assert wellbeing.def_field == "study_id"
    meta = {m["field_name"]: m for m in wellbeing.export_metadata()}
    assert (meta["enr_site"]["field_type"], meta["enr_site"]["select_choices_or_calculations"]) == (
        "dropdown", "B, Berlin | H, Heidelberg")
    assert (meta["enr_age"]["text_validation_type_or_show_slider_number"],
            meta["enr_age"]["text_validation_min"], meta["enr_age"]["text_validation_max"],
            meta["enr_age"]["field_annotation"]) == ("integer", "18", "90", "@FORCE-MINMAX")
    assert meta["enr_symptoms"]["section_header"] == "Symptoms at enrolment"
    assert meta["enr_notes"]["field_type"] == "notes"
    assert meta["wb_sleep_hours"]["text_validation_type_or_show_slider_number"] == "number"
    assert [(e["unique_event_name"], e["days_offset"]) for e in wellbeing.export_events()] == [
        ("baseline_arm_1", 0), ("follow_up_arm_1", 30)]
    assert wellbeing.export_repeating_instruments_events() == [
        {"event_name": "follow_up_arm_1", "form_name": "side_effect", "custom_form_label": "[se_term]"}]
    assert [d["unique_group_name"] for d in wellbeing.export_dags()] == [
        "site_berlin", "site_heidelberg"]
    rows = wellbeing.export_records()
    assert [(r["redcap_event_name"], r["redcap_repeat_instance"]) for r in rows] == [
        ("baseline_arm_1", ""), ("follow_up_arm_1", ""), ("follow_up_arm_1", 1),
        ("follow_up_arm_1", 2)]
    assert (rows[0]["enr_symptoms___1"], rows[0]["enr_symptoms___2"],
            rows[0]["enrolment_complete"]) == ("1", "0", "2")
    assert rows[3]["se_term"] == "Headache & fatigue"


def test_our_project_exported_as_xml_recreates_the_same_project(
        project: redcap.Project, perpain: PerpainProject) -> None:
    project.import_records([
        {"record_id": "1", "redcap_event_name": "t0_baseline_arm_1", "dem_age": 44,
         "cons_optout___sms": 1},
        {"record_id": "1", "redcap_event_name": "week_4_arm_1",
         "redcap_repeat_instrument": "adverse_event", "redcap_repeat_instance": 1,
         "ae_term": "headache"}])
    payload = project._initialize_payload("project_xml")
    odm = str(project._call_api(payload, "str"))
    assert odm.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n<ODM ')
    copy = perpain.project(create_project(perpain.api_url, "PerPAIN copy", odm, perpain.statuses))
    assert copy.export_metadata() == project.export_metadata()
    assert copy.export_events() == project.export_events()
    assert copy.export_instrument_event_mappings() == project.export_instrument_event_mappings()
    assert (copy.export_repeating_instruments_events()
            == project.export_repeating_instruments_events())
    assert copy.export_records() == project.export_records()


def test_project_creation_needs_a_known_super_token_and_a_valid_odm(
        perpain: PerpainProject) -> None:
    with pytest.raises(RedcapError, match="permissions"):
        create_project(perpain.api_url, "No", None, perpain.statuses, token="6" * 64)
    assert perpain.statuses.last == 403
    with pytest.raises(RedcapError, match="not a REDCap project XML"):
        create_project(perpain.api_url, "Broken", "<ODM/>", perpain.statuses)
    assert perpain.statuses.last == 400
    duplicate = (FIXTURES / "wellbeing_project.xml").read_text(encoding="utf-8").replace(
        'redcap:Variable="wb_sleep_hours"/>', 'redcap:Variable="wb_sleep_hours"/>'
        '<ItemRef ItemOID="enr_age" Mandatory="No" redcap:Variable="wb_mood"/>', 1)
    with pytest.raises(RedcapError) as err:
        create_project(perpain.api_url, "Duplicate", duplicate, perpain.statuses)
    assert "(wb_mood) This variable name is used more than once." in error_message(err)


def test_an_empty_longitudinal_project_can_be_created_without_xml(
        perpain: PerpainProject) -> None:
    token = create_project(perpain.api_url, "Blank", None, perpain.statuses)
    blank = perpain.project(token)
    assert blank.export_instruments() == [{"instrument_name": "my_first_instrument",
                                           "instrument_label": "My First Instrument"}]


def test_a_broken_project_xml_is_a_worded_400_never_a_500(perpain: PerpainProject) -> None:
    wellbeing = (FIXTURES / "wellbeing_project.xml").read_text(encoding="utf-8")
    no_oid = wellbeing.replace('<ItemDef OID="enr_age"', "<ItemDef", 1)
    with pytest.raises(RedcapError) as err:
        create_project(perpain.api_url, "No OID", no_oid, perpain.statuses)
    assert "lacks a required attribute: OID" in error_message(err)
    assert perpain.statuses.last == 400
    bad_encoding = wellbeing.replace('encoding="UTF-8"', 'encoding="U-X"', 1)
    with pytest.raises(RedcapError) as err:
        create_project(perpain.api_url, "Encoding", bad_encoding, perpain.statuses)
    assert "could not be parsed" in error_message(err) and perpain.statuses.last == 400
