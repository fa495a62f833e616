"""A project created from REDCap's own project XML (pseudo-fields, calculated values, roles,
DAGs, a repeating instrument, surveys), then its users, roles and rights used through PyCap."""

from __future__ import annotations

import httpx
import pytest
import redcap
from redcap import RedcapError

from sim.redcap.testing import RunningEmulator

from .conftest import FIXTURES, PerpainProject, error_message
from .test_project_xml import create_project

CLINIC_XML = (FIXTURES / "clinic_survey_project.xml").read_text(encoding="utf-8")


@pytest.fixture
def clinic(perpain: PerpainProject) -> redcap.Project:
    token = create_project(perpain.api_url, "Clinic survey study", CLINIC_XML, perpain.statuses)
    return perpain.project(token)


def _token_for(emulator: RunningEmulator, project: redcap.Project, username: str) -> str:
    pid = int(project.export_project_info()["project_id"])
    return emulator.emulator.store.add_token(pid, username)


def test_pseudo_fields_are_not_fields_and_calculated_values_are_not_stored(
        clinic: redcap.Project) -> None:
    names = [m["field_name"] for m in clinic.export_metadata()]
    assert names == ["record_id", "ci_name", "ci_email", "ci_age", "v_date", "v_weight",
                     "v_height", "v_bmi", "fb_score", "fb_comment"]
    rows = clinic.export_records(export_data_access_groups=True)
    assert [(r["record_id"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"],
             r["redcap_data_access_group"]) for r in rows] == [
        ("1", "", "", "clinic_north"), ("1", "visit", 1, "clinic_north"),
        ("1", "visit", 2, "clinic_north"), ("2", "", "", "clinic_south")]
    assert rows[1]["v_weight"] == "70" and rows[1]["v_bmi"] == ""
    info = clinic.export_project_info()
    assert info["surveys_enabled"] == 1 and info["has_repeating_instruments_or_events"] == 1


def test_the_reply_is_the_token_alone_and_an_error_is_never_a_token(
        perpain: PerpainProject) -> None:
    token = create_project(perpain.api_url, "Plain", CLINIC_XML, perpain.statuses)
    assert len(token) == 32 and token.isalnum()
    broken = CLINIC_XML.replace('redcap:FieldType="radio"', 'redcap:FieldType="bogus"')
    with pytest.raises(RedcapError) as err:
        create_project(perpain.api_url, "Broken", broken, perpain.statuses)
    assert "<error>" in str(err.value) and "'bogus' is not a valid field type" in str(err.value)
    assert perpain.statuses.last == 400


def test_roles_from_the_xml_are_exported_with_their_form_rights(clinic: redcap.Project) -> None:
    roles = {r["unique_role_name"]: r for r in clinic.export_user_roles()}
    assert set(roles) == {"U-NURSE00001", "U-ANALYST001"}
    nurse = roles["U-NURSE00001"]
    assert nurse["role_label"] == "Nurse"
    assert nurse["forms"] == {"contact_info": 1, "visit": 1, "feedback": 0}
    assert nurse["api_export"] == 1 and nurse["user_rights"] == 0
    csv_text = clinic.export_user_roles(format_type="csv")
    assert "contact_info:2,visit:2,feedback:2" in csv_text


def test_users_roles_and_mappings_round_trip_through_pycap(clinic: redcap.Project) -> None:
    assert clinic.import_users([{"username": "nina", "email": "nina@example.org"},
                                {"username": "alan"}]) == 2
    assert clinic.import_user_role_assignment([
        {"username": "nina", "unique_role_name": "U-NURSE00001"},
        {"username": "alan", "unique_role_name": "U-ANALYST001"}]) == 2
    assert clinic.import_user_dag_assignment([
        {"username": "nina", "redcap_data_access_group": "clinic_north"}]) == 1
    mapping = {m["username"]: m for m in clinic.export_user_role_assignment()}
    assert mapping["nina"] == {"username": "nina", "unique_role_name": "U-NURSE00001",
                               "data_access_group": "clinic_north"}
    users = {u["username"]: u for u in clinic.export_users()}
    assert users["nina"]["forms"]["feedback"] == 0  # the role's rights, not her own
    assert users["nina"]["data_access_group"] == "clinic_north"
    assert clinic.export_user_dag_assignment()[-1] == {"username": "alan",
                                                       "redcap_data_access_group": ""}
    new = clinic.import_user_roles([{"role_label": "Monitor", "forms": {"visit": 2}}])
    assert new == 1
    monitor = next(r for r in clinic.export_user_roles() if r["role_label"] == "Monitor")
    assert monitor["unique_role_name"].startswith("U-") and monitor["forms"]["visit"] == 2
    assert clinic.delete_user_roles([monitor["unique_role_name"]]) == 1
    with pytest.raises(RedcapError) as err:
        clinic.delete_user_roles(["U-NURSE00001"])
    assert "users are assigned to it: nina" in error_message(err)
    assert clinic.delete_users(["alan"]) == 1
    assert "alan" not in {u["username"] for u in clinic.export_users()}


def test_bad_rights_are_refused_naming_the_column_and_change_nothing(
        clinic: redcap.Project) -> None:
    with pytest.raises(RedcapError) as err:
        clinic.import_users([{"username": "x", "forms": {"no_such_form": 1}}])
    assert "The instrument 'no_such_form' in 'forms' does not exist" in error_message(err)
    with pytest.raises(RedcapError) as err:
        clinic.import_user_roles([{"role_label": "R", "forms_export": {"visit": 7}}])
    assert "'forms_export'" in error_message(err)
    assert "x" not in {u["username"] for u in clinic.export_users()}


def test_record_export_keeps_to_the_forms_and_group_the_user_may_see(
        emulator: RunningEmulator, clinic: redcap.Project) -> None:
    clinic.import_users([{"username": "nina"}, {"username": "alan"}])
    clinic.import_user_role_assignment([
        {"username": "nina", "unique_role_name": "U-NURSE00001"},
        {"username": "alan", "unique_role_name": "U-ANALYST001"}])
    clinic.import_user_dag_assignment([{"username": "nina",
                                        "redcap_data_access_group": "clinic_north"}])
    nina = redcap.Project(clinic.url, _token_for(emulator, clinic, "nina"))
    rows = nina.export_records()
    assert {r["record_id"] for r in rows} == {"1"}  # her group only
    assert "fb_score" not in rows[0] and "ci_name" in rows[0]  # no access to feedback
    alan = redcap.Project(clinic.url, _token_for(emulator, clinic, "alan"))
    row = alan.export_records(records=["1"])[0]
    # de-identified export of contact_info drops identifiers and free text;
    # "identifiers removed" on visit keeps dates; full export of feedback keeps the comment
    assert "ci_name" not in row and "ci_email" not in row and row["ci_age"] == "41"
    assert "fb_comment" in row
    with pytest.raises(RedcapError) as err:
        alan.import_records([{"record_id": "9"}])
    assert error_message(err) == "You do not have API Import/Update privileges"
    with pytest.raises(RedcapError) as err:
        nina.import_records([{"record_id": "2", "ci_age": "50"}])
    assert "another data access group" in error_message(err)
    nina.import_records([{"record_id": "7", "ci_name": "New"}])
    dags = {r["record_id"]: r["redcap_data_access_group"]
            for r in clinic.export_records(export_data_access_groups=True)}
    assert dags["7"] == "clinic_north"  # a record she creates joins her group
    with pytest.raises(RedcapError) as err:
        nina.export_users()
    assert error_message(err) == "You do not have User Rights privileges"


def test_dags_import_rename_delete_and_switch(emulator: RunningEmulator,
                                             clinic: redcap.Project) -> None:
    assert clinic.import_dags([{"data_access_group_name": "Clinic East",
                                "unique_group_name": ""}]) == 1
    assert clinic.import_dags([{"data_access_group_name": "North (main)",
                                "unique_group_name": "clinic_north"}]) == 1
    dags = {d["unique_group_name"]: d["data_access_group_name"] for d in clinic.export_dags()}
    assert dags == {"clinic_north": "North (main)", "clinic_south": "Clinic South",
                    "clinic_east": "Clinic East"}
    assert clinic.delete_dags(["clinic_south"]) == 1
    rows = clinic.export_records(export_data_access_groups=True)
    assert {r["record_id"]: r["redcap_data_access_group"] for r in rows}["2"] == ""
    assert clinic.switch_dag("clinic_east") == "1"
    assert clinic.export_records() == []  # the creator now sees its new group only
    assert clinic.switch_dag("") == "1"
    with pytest.raises(RedcapError) as err:
        clinic.switch_dag("nowhere")
    assert "does not exist" in error_message(err)


def test_arms_and_events_delete_and_event_import_with_override(project: redcap.Project) -> None:
    project.import_records([{"record_id": "1", "redcap_event_name": "week_4_arm_1",
                             "pgic_rating": "3"}])
    assert project.delete_events(["week_4_arm_1"]) == 1
    names = [e["unique_event_name"] for e in project.export_events()]
    assert "week_4_arm_1" not in names
    assert all(r["redcap_event_name"] != "week_4_arm_1" for r in project.export_records())
    assert project.import_events([{"event_name": "Only", "arm_num": "1"}], override=1) == 1
    assert [e["unique_event_name"] for e in project.export_events()] == ["only_arm_1"]
    assert project.import_arms([{"arm_num": "2", "name": "Second"}]) == 1
    assert project.delete_arms(["2"]) == 1
    assert [a["arm_num"] for a in project.export_arms()] == [1]
    with pytest.raises(RedcapError) as err:
        project.delete_arms(["9"])
    assert "'9'" in error_message(err)


def test_a_project_user_saves_only_instruments_it_may_edit(
        emulator: RunningEmulator, clinic: redcap.Project) -> None:
    pid = int(clinic.export_project_info()["project_id"])
    clinic.import_users([{"username": "nina"}])
    clinic.import_user_role_assignment([{"username": "nina", "unique_role_name": "U-NURSE00001"}])
    saved = emulator.save_form("contact_info", values={"ci_age": "33"}, record="2",
                               username="nina", project_id=pid)
    assert saved["record"] == "2"
    response = httpx.post(f"{emulator.base_url}/emulator/projects/{pid}/forms/feedback",
                          json={"values": {"fb_score": "1"}, "record": "2", "username": "nina"})
    assert response.status_code == 403
    assert "may not edit the instrument 'feedback'" in response.json()["detail"]


def test_every_export_path_keeps_to_the_callers_forms_and_group(
        emulator: RunningEmulator, clinic: redcap.Project) -> None:
    """The blinding check relies on this: no export route shows a form the user may not see."""
    clinic.import_users([{"username": "nina"}])
    clinic.import_user_role_assignment([{"username": "nina", "unique_role_name": "U-NURSE00001"}])
    clinic.import_user_dag_assignment([{"username": "nina",
                                        "redcap_data_access_group": "clinic_north"}])
    nina = redcap.Project(clinic.url, _token_for(emulator, clinic, "nina"))
    xml = str(nina._call_api(nina._initialize_payload("project_xml"), "str"))
    assert 'ItemOID="fb_comment" Value=' not in xml and "Friendly staff." not in xml
    assert 'SubjectKey="2"' not in xml and "Ada Example" in xml
    pdf, _ = nina.export_pdf(record="1")
    assert b"Friendly staff" not in pdf and b"Ada Example" in pdf
    eav = nina.export_records(record_type="eav")
    assert {r["field_name"] for r in eav}.isdisjoint({"fb_score", "fb_comment", "feedback_complete"})
    assert nina.generate_next_record_name() == "1000-1"
