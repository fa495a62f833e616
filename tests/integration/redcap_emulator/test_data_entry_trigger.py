"""A form saved "through the user interface" fires exactly one DET, as REDCap posts it;
API imports fire none; a lost trigger or a dead receiver loses only the notification."""

from __future__ import annotations

import httpx
import pytest
import redcap

from sim.redcap.testing import RunningEmulator

from .conftest import BASELINE, FIXTURES, DetReceiver, PerpainProject


def test_saving_a_form_fires_one_det_with_redcaps_fields(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver,
        project: redcap.Project) -> None:
    saved = emulator.save_form("demographics", record="1", event=BASELINE, username="nurse_a",
                               values={"dem_age": "52", "dem_sex": "2"},
                               project_id=perpain.pid)
    assert saved["det"]["status_code"] == 200
    base = emulator.base_url + "/"
    assert det.posts == [{
        "project_id": str(perpain.pid), "username": "nurse_a", "instrument": "demographics",
        "record": "1", "redcap_event_name": BASELINE, "demographics_complete": "2",
        "redcap_url": base, "project_url": f"{base}redcap_v14.5.10/index.php?pid={perpain.pid}",
        "?secret": "s3cret"}]
    row = project.export_records(forms=["demographics"])[0]
    assert (row["dem_age"], row["dem_sex"], row["demographics_complete"]) == ("52", "2", "2")


def test_a_repeating_instrument_save_names_its_instance(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver) -> None:
    for term in ("headache", "nausea"):
        emulator.save_form("adverse_event", record="3", event="week_4_arm_1",
                           values={"ae_term": term}, complete="1", project_id=perpain.pid)
    assert [(p["redcap_repeat_instrument"], p["redcap_repeat_instance"],
             p["adverse_event_complete"]) for p in det.posts] == [
        ("adverse_event", "1", "1"), ("adverse_event", "2", "1")]
    emulator.save_form("adverse_event", record="3", event="week_4_arm_1", repeat_instance=1,
                       values={"ae_severity": "2"}, project_id=perpain.pid)
    assert det.posts[-1]["redcap_repeat_instance"] == "1"


def test_api_imports_fire_no_det(project: redcap.Project, det: DetReceiver,
                                 emulator: RunningEmulator, perpain: PerpainProject) -> None:
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": 40}])
    assert det.posts == []
    assert emulator.det_deliveries(perpain.pid) == []


def test_a_lost_trigger_saves_the_data_without_any_post(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver,
        project: redcap.Project) -> None:
    saved = emulator.save_form("consent", record="4", event=BASELINE, fire_det=False,
                               values={"cons_given": "1", "cons_date": "2024-05-02"},
                               project_id=perpain.pid)
    assert saved["det"] is None
    assert det.posts == []
    assert project.export_records(records=["4"], fields=["cons_date"])[0]["cons_date"] == (
        "2024-05-02")


def test_a_failing_receiver_gets_one_attempt_recorded_and_no_retry(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver) -> None:
    det.status = 503
    emulator.save_form("screening", record="5", values={"scr_eligible": "1"},
                       project_id=perpain.pid)
    assert len(det.posts) == 1
    emulator.set_det_url("http://127.0.0.1:9/redcap/det", project_id=perpain.pid)  # nobody there
    emulator.save_form("screening", record="6", values={"scr_eligible": "0"},
                       project_id=perpain.pid)
    deliveries = emulator.det_deliveries(perpain.pid)
    assert [(d["payload"]["record"], d["status_code"]) for d in deliveries] == [
        ("5", 503), ("6", None)]
    assert "ConnectError" in deliveries[1]["error"]
    assert len(det.posts) == 1


def test_new_record_from_the_ui_gets_the_next_number(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver,
        project: redcap.Project) -> None:
    project.import_records([{"record_id": "41", "redcap_event_name": BASELINE}])
    saved = emulator.save_form("screening", values={"scr_eligible": "1"}, project_id=perpain.pid)
    assert (saved["record"], saved["event"]) == ("42", BASELINE)
    assert det.posts[-1]["record"] == "42"


def test_ui_refuses_read_only_fields_bad_values_and_other_forms(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver,
        project: redcap.Project) -> None:
    cases = [("allocation", {"alloc_module": "PERT"}, "read-only (@READONLY)"),
             ("demographics", {"dem_sex": "9"}, "not a valid category for dem_sex"),
             ("demographics", {"hads_1": "1"}, "not a field of the instrument 'demographics'")]
    for form, values, expected in cases:
        with pytest.raises(httpx.HTTPStatusError) as err:
            emulator.save_form(form, record="7", event=BASELINE, values=values,
                               project_id=perpain.pid)
        assert err.value.response.status_code == 400
        assert expected in err.value.response.json()["detail"]
    assert det.posts == []
    assert project.export_records(records=["7"]) == []
    # Tailor writes the same read-only field through the API
    project.import_records([{"record_id": "7", "redcap_event_name": BASELINE,
                             "alloc_module": "PERT", "alloc_number": "17"}])
    assert project.export_records(records=["7"], fields=["alloc_module"])[0][
        "alloc_module"] == "PERT"


def test_ui_saves_are_logged_under_the_persons_name(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver,
        project: redcap.Project) -> None:
    emulator.save_form("consent", record="8", event=BASELINE, username="nurse_b",
                       values={"cons_given": "1"}, project_id=perpain.pid)
    entry = project.export_logging(log_type="record", record="8")[0]
    assert (entry["username"], entry["action"]) == ("nurse_b", "Create record 8")
    assert "cons_given = '1'" in entry["details"]


def test_a_record_in_a_data_access_group_names_it_in_the_det(
        emulator: RunningEmulator, perpain: PerpainProject, det: DetReceiver,
        det_server: tuple[DetReceiver, str]) -> None:
    odm = (FIXTURES / "wellbeing_project.xml").read_text(encoding="utf-8")
    pid, token = emulator.emulator.create_from_odm(odm)
    emulator.set_det_url(det_server[1] + "/redcap/det", project_id=pid)
    emulator.save_form("enrolment", record="2", event="baseline_arm_1", dag="site_berlin",
                       values={"enr_date": "2024-03-01", "enr_symptoms___2": "1"},
                       project_id=pid)
    assert det.posts[-1]["redcap_data_access_group"] == "site_berlin"
    assert det.posts[-1]["project_id"] == str(pid)
    rows = perpain.project(token).export_records(records=["2"], export_data_access_groups=True)
    assert (rows[0]["redcap_data_access_group"], rows[0]["enr_symptoms___2"]) == (
        "site_berlin", "1")
