"""The gateway's internal survey-link routes: notifications asks them, with the survey-link
secret, for the link REDCap made for one participant; the answer is REDCap's own link
(the emulator's survey page takes it), each answer is recorded as a read of that
participant, bad input is a 4xx naming the parameter, and REDCap down is a 503."""

from __future__ import annotations

import json

import httpx
import pytest
import redcap
from sqlmodel import Session, select

from services.core.audit import AuditEntry
from services.core.survey_links import HEADER, QUEUE_LINK_PATH, SURVEY_LINK_PATH

from .conftest import Stack

SECRET = "survey-link-secret-of-this-test"
RECORD = "3001"


@pytest.fixture
def project(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> redcap.Project:
    monkeypatch.setenv("TAILOR_SURVEY_LINK_SECRET", SECRET)  # read at the first request
    project = redcap.Project(stack.redcap.api_url, stack.redcap.token)
    project.import_records([{"record_id": RECORD, "redcap_event_name": "t0_baseline_arm_1",
                             "dem_age": "40"}])
    return project


def ask(stack: Stack, path: str = SURVEY_LINK_PATH, secret: str | None = SECRET,
        **params: str) -> httpx.Response:
    headers = {HEADER: secret} if secret is not None else {}
    return httpx.get(stack.gateway_url + path, params=params, headers=headers, timeout=30)


def reads_of(stack: Stack, record: str) -> list[AuditEntry]:
    with Session(stack.engine) as session:
        return list(session.exec(select(AuditEntry).where(
            AuditEntry.record == record, AuditEntry.action == "participant_data.read")))


def test_the_answer_is_the_participants_own_redcap_link_and_the_read_is_recorded(
        stack: Stack, project: redcap.Project) -> None:
    r = ask(stack, record=RECORD, instrument="mpid_ps", event="week_4")
    assert r.status_code == 200, r.text
    link = r.json()["link"]
    assert link == project.export_survey_link(record=RECORD, instrument="mpid_ps",
                                              event="week_4_arm_1")
    assert r.headers["cache-control"] == "no-store"
    page = httpx.get(link, timeout=30)
    assert page.status_code == 200 and "mpidps_1_1" in page.text
    answered = httpx.post(link, data={"mpidps_1_1": "3"}, timeout=30)
    assert answered.status_code == 200, answered.text
    [read] = reads_of(stack, RECORD)
    assert read.actor == "service:notifications"
    after = json.loads(read.after or "{}")
    assert after["params"] == {"instrument": "mpid_ps", "event": "week_4_arm_1"}
    assert link.split("s=")[1] not in (read.after or "")  # the hash opens the survey: never kept


def test_several_surveys_are_reached_through_the_participants_survey_queue_link(
        stack: Stack, project: redcap.Project) -> None:
    r = ask(stack, QUEUE_LINK_PATH, record=RECORD)
    assert r.status_code == 200, r.text
    assert r.json()["link"] == project.export_survey_queue_link(record=RECORD)


def test_a_diary_prompt_gets_its_own_instance_of_the_diary_survey(
        stack: Stack, project: redcap.Project) -> None:
    """One instance per prompt: the link of instance 14 answers instance 14 and no other,
    and the read is recorded with the instance."""
    r = ask(stack, record=RECORD, instrument="diary", event="diary", repeat_instance="14")
    assert r.status_code == 200, r.text
    link = r.json()["link"]
    assert link == project.export_survey_link(record=RECORD, instrument="diary",
                                              event="diary_arm_1", repeat_instance=14)
    other = ask(stack, record=RECORD, instrument="diary", event="diary", repeat_instance="15")
    assert other.json()["link"] != link
    assert httpx.post(link, data={"diary_mood": "4"}, timeout=30).status_code == 200
    rows = [r for r in project.export_records(records=[RECORD], events=["diary_arm_1"])
            if r["redcap_repeat_instrument"] == "diary"]
    assert [(r["redcap_repeat_instance"], r["diary_mood"], r["diary_complete"])
            for r in rows] == [(14, "4", "2")]
    after = json.loads(reads_of(stack, RECORD)[0].after or "{}")
    assert after["params"] == {"instrument": "diary", "event": "diary_arm_1",
                               "repeat_instance": "14"}


@pytest.mark.parametrize(("params", "field"), [
    ({"instrument": "diary", "event": "diary"}, "repeat_instance"),
    ({"instrument": "diary", "event": "diary", "repeat_instance": "0"}, "repeat_instance"),
    ({"instrument": "diary", "event": "diary", "repeat_instance": "841"}, "repeat_instance"),
    ({"instrument": "diary", "event": "diary", "repeat_instance": "x"}, "repeat_instance"),
    ({"instrument": "mpid_ps", "event": "week_4", "repeat_instance": "2"}, "repeat_instance"),
    ({"instrument": "diary", "event": "week_4", "repeat_instance": "2"}, "instrument"),
    ({"instrument": "mpid_ps", "event": "diary", "repeat_instance": "2"}, "event"),
])
def test_a_diary_link_needs_a_prompts_instance_and_only_the_diary_repeats(
        stack: Stack, project: redcap.Project, params: dict[str, str], field: str) -> None:
    r = ask(stack, record=RECORD, **params)
    assert (r.status_code, r.json().get("field")) == (422, field), r.text
    assert reads_of(stack, RECORD) == []


@pytest.mark.parametrize("secret", [None, "", "not-the-secret"])
def test_a_wrong_or_missing_secret_is_refused_and_nothing_is_read(
        stack: Stack, project: redcap.Project, secret: str | None) -> None:
    r = ask(stack, secret=secret, record=RECORD, instrument="mpid_ps", event="week_4")
    assert r.status_code == 403
    assert r.json()["field"] == HEADER
    assert reads_of(stack, RECORD) == []


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"instrument": "mpid_ps", "event": "week_4"}, 422, "record"),
    ({"record": RECORD, "event": "week_4"}, 422, "instrument"),
    ({"record": RECORD, "instrument": "mpid_ps"}, 422, "event"),
    ({"record": RECORD, "instrument": "pgic", "event": "week_4"}, 422, "instrument"),
    ({"record": RECORD, "instrument": "mpid", "event": "t0_baseline"}, 422, "instrument"),
    ({"record": RECORD, "instrument": "mpid_ps", "event": "week_5_arm_1"}, 422, "event"),
    ({"record": "30 01", "instrument": "mpid_ps", "event": "week_4"}, 422, "record"),
    ({"record": "x" * 101, "instrument": "mpid_ps", "event": "week_4"}, 422, "record"),
])
def test_bad_input_is_a_4xx_naming_the_parameter_and_nothing_is_read(
        stack: Stack, project: redcap.Project, params: dict[str, str], status: int,
        field: str) -> None:
    r = ask(stack, **params)
    assert (r.status_code, r.json().get("field")) == (status, field), r.text
    assert reads_of(stack, RECORD) == []


def test_a_record_redcap_does_not_know_is_refused_not_retried(
        stack: Stack, project: redcap.Project) -> None:
    r = ask(stack, record="9999", instrument="mpid_ps", event="week_4")
    assert r.status_code == 422 and r.json()["field"] == "redcap"
    assert "9999" in r.json()["detail"]


def test_redcap_down_is_a_503_and_the_link_comes_once_it_is_back(
        stack: Stack, project: redcap.Project) -> None:
    stack.redcap.set_fault("error", status=500)
    try:
        r = ask(stack, record=RECORD, instrument="mpid_ps", event="week_4")
        assert r.status_code == 503 and r.json()["field"] == "redcap"
    finally:
        stack.redcap.clear_fault()
    assert reads_of(stack, RECORD) == []
    assert ask(stack, record=RECORD, instrument="mpid_ps", event="week_4").status_code == 200
