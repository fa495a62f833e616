"""Surveys of a project created from REDCap's XML: links, queue link, access and return
codes, the participant list, and a participant submitting the survey page (which completes
the form and fires the Data Entry Trigger as REDCap does for a survey response)."""

from __future__ import annotations

import httpx
import pytest
import redcap
from redcap import RedcapError

from sim.redcap.testing import RunningEmulator

from .conftest import DetReceiver, PerpainProject, error_message
from .test_project_xml import create_project
from .test_users_and_rights import CLINIC_XML


@pytest.fixture
def clinic_project(perpain: PerpainProject) -> tuple[redcap.Project, int]:
    token = create_project(perpain.api_url, "Clinic survey study", CLINIC_XML, perpain.statuses)
    project = perpain.project(token)
    return project, int(project.export_project_info()["project_id"])


def test_links_and_codes_are_stable_and_shaped_like_redcaps(
        clinic_project: tuple[redcap.Project, int], emulator: RunningEmulator) -> None:
    clinic, _ = clinic_project
    link = clinic.export_survey_link(record="2", instrument="feedback")
    assert link.startswith(emulator.base_url.rstrip("/") + "/surveys/?s=") and len(link.split("=")[1]) == 10
    assert clinic.export_survey_link(record="2", instrument="feedback") == link
    code = clinic.export_survey_access_code(record="2", instrument="feedback")
    assert len(code) == 9 and code.isalnum()
    assert len(clinic.export_survey_return_code(record="2", instrument="feedback")) == 8
    queue = clinic.export_survey_queue_link(record="2")
    assert "/surveys/?sq=" in queue
    with pytest.raises(RedcapError) as err:  # contact_info has no Save & Return
        clinic.export_survey_return_code(record="2", instrument="contact_info")
    assert "Save & Return" in error_message(err)
    with pytest.raises(RedcapError) as err:
        clinic.export_survey_link(record="2", instrument="visit")
    assert error_message(err) == "ERROR: The instrument 'visit' is not enabled as a survey"
    with pytest.raises(RedcapError) as err:
        clinic.export_survey_link(record="99", instrument="feedback")
    assert error_message(err) == "ERROR: The record '99' does not exist"


def test_participant_list_names_each_record_with_its_link_and_status(
        clinic_project: tuple[redcap.Project, int]) -> None:
    clinic, _ = clinic_project
    rows = {r["record"]: r for r in clinic.export_survey_participant_list(instrument="contact_info")}
    assert set(rows) == {"1", "2"}
    assert rows["1"]["email"] == "ada@example.org" and rows["1"]["response_status"] == 2
    assert rows["2"]["response_status"] == 0
    assert rows["2"]["survey_link"] == clinic.export_survey_link(record="2",
                                                                 instrument="contact_info")


def test_submitting_the_survey_page_completes_the_form_and_fires_the_det(
        clinic_project: tuple[redcap.Project, int], emulator: RunningEmulator,
        det_server: tuple[DetReceiver, str]) -> None:
    clinic, pid = clinic_project
    receiver, base = det_server
    receiver.posts.clear()
    emulator.set_det_url(f"{base}/redcap/det?secret=x", project_id=pid)
    link = clinic.export_survey_link(record="2", instrument="feedback")
    page = httpx.get(link)
    assert page.status_code == 200 and "How was your visit?" in page.text
    answer = httpx.post(link, data={"fb_score": "2", "fb_comment": "Long wait."})
    assert answer.status_code == 200 and "Thank you for your feedback." in answer.text
    row = next(r for r in clinic.export_records(records=["2"])
               if r["redcap_repeat_instrument"] == "")
    assert (row["fb_score"], row["fb_comment"], row["feedback_complete"]) == ("2", "Long wait.", "2")
    assert len(receiver.posts) == 1
    det = receiver.posts[0]
    assert (det["instrument"], det["record"], det["feedback_complete"], det["username"],
            det["project_id"]) == ("feedback", "2", "2", "[survey respondent]", str(pid))
    statuses = {r["record"]: r["response_status"]
                for r in clinic.export_survey_participant_list(instrument="feedback")}
    assert statuses["2"] == 2
    again = httpx.post(link, data={"fb_score": "3"})
    assert again.status_code == 409 and "already completed" in again.text
    assert len(receiver.posts) == 1
    survey_row = clinic.export_records(records=["2"], export_survey_fields=True)[0]
    keys = list(survey_row)
    assert keys.index("redcap_survey_identifier") < keys.index("contact_info_timestamp") < (
        keys.index("ci_name"))
    assert keys.index("feedback_timestamp") == keys.index("fb_score") - 1
    assert survey_row["feedback_timestamp"] != "" and survey_row["contact_info_timestamp"] == ""
    log = clinic.export_logging(record="2")
    assert log[0]["username"] == "[survey respondent]"


def test_a_bad_answer_is_refused_and_changes_nothing(
        clinic_project: tuple[redcap.Project, int]) -> None:
    clinic, _ = clinic_project
    link = clinic.export_survey_link(record="2", instrument="feedback")
    bad = httpx.post(link, data={"fb_score": "9"})
    assert bad.status_code == 400 and "not a valid category" in bad.text
    assert httpx.post(link, data={"v_weight": "80"}).status_code == 400
    row = clinic.export_records(records=["2"])[0]
    assert row["fb_score"] == "" and row["feedback_complete"] == "0"
    assert httpx.get(link.replace("?s=", "?s=NOPE")).status_code == 404


def test_the_survey_queue_lists_the_records_surveys_before_any_link_was_asked_for(
        perpain: PerpainProject, project: redcap.Project) -> None:
    """The PerPAIN project ships its follow-up questionnaires as surveys (surveys.json):
    a participant given only their queue link reaches each of them."""
    project.import_records([{"record_id": "7", "redcap_event_name": "t0_baseline_arm_1",
                             "dem_age": "50"}])
    page = httpx.get(project.export_survey_queue_link(record="7"), timeout=30)
    assert page.status_code == 200
    listed = page.text.count("<li>")
    t1 = ["mpid_ps", "hads", "panas", "odi", "work_medication", "neq", "inep"]
    # hads, panas and odi are surveys at baseline too; week 4 and 8 have mpid_ps only.
    assert listed == 3 + 1 + 1 + len(t1) + len(t1)
    assert "(t1_post_arm_1)" in page.text and "pgic" not in page.text.lower()
    link = project.export_survey_link(record="7", instrument="neq", event="t1_post_arm_1")
    assert link in page.text  # the same participant entry, not a second one
