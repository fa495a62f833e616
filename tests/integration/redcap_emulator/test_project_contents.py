"""Project-level contents through PyCap: version, project info, metadata, instruments,
events, arms, form-event mapping, repeating setup, export field names, DAGs, and tokens."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
import redcap
import semantic_version
from redcap import RedcapError

from sim.redcap.design import METADATA_COLUMNS
from sim.redcap.testing import RunningEmulator

from .conftest import BASELINE, PerpainProject, StatusLog, error_message


def test_version_and_project_info(project: redcap.Project, perpain: PerpainProject) -> None:
    assert project.export_version() == semantic_version.Version("14.5.10")
    info = project.export_project_info()
    assert (info["project_id"], info["is_longitudinal"],
            info["has_repeating_instruments_or_events"], info["in_production"]) == (
        perpain.pid, 1, 1, 0)
    assert project.is_longitudinal is True
    assert project.def_field == "record_id"


def test_metadata_has_the_18_columns_and_filters_by_field_and_form(
        project: redcap.Project) -> None:
    rows = project.export_metadata()
    assert tuple(rows[0]) == METADATA_COLUMNS
    assert rows[0]["field_name"] == "record_id"
    sex = project.export_metadata(fields=["dem_sex"])
    assert [(r["field_type"], r["select_choices_or_calculations"]) for r in sex] == [
        ("radio", "1, Female | 2, Male")]
    assert {r["form_name"] for r in project.export_metadata(forms=["allocation"])} == {
        "allocation"}
    frame = project.export_metadata(format_type="df")
    assert frame.loc["alloc_number", "field_annotation"] == "@READONLY"
    with pytest.raises(RedcapError) as err:
        project.export_metadata(fields=["no_such_field"])
    assert "'no_such_field'" in error_message(err)


def test_instruments_events_arms_and_mapping(project: redcap.Project) -> None:
    instruments = project.export_instruments()
    assert instruments[0] == {"instrument_name": "screening", "instrument_label": "Screening"}
    assert len(instruments) == 16
    events = project.export_events()
    assert [(e["unique_event_name"], e["days_offset"], e["offset_min"], e["offset_max"])
            for e in events] == [(BASELINE, 0, 0, 14), ("diary_arm_1", 1, 0, 84),
                                 ("week_4_arm_1", 28, 3, 14),
                                 ("week_8_arm_1", 56, 3, 14), ("t1_post_arm_1", 84, 0, 28),
                                 ("t2_followup_arm_1", 175, 0, 28)]
    assert project.export_arms() == [{"arm_num": 1, "name": "All participants"}]
    mapping = project.export_instrument_event_mappings()
    week_4 = [m["form"] for m in mapping if m["unique_event_name"] == "week_4_arm_1"]
    assert week_4 == ["mpid_ps", "pgic", "adverse_event", "withdrawal"]
    repeating = project.export_repeating_instruments_events()
    assert {(r["event_name"], r["form_name"]) for r in repeating} == {
        (e["unique_event_name"], "adverse_event") for e in events
        if e["unique_event_name"] != "diary_arm_1"} | {("diary_arm_1", "diary")}


def test_export_field_names_expands_checkboxes(project: redcap.Project) -> None:
    names = project.export_field_names(field="cons_optout")
    assert [(n["choice_value"], n["export_field_name"]) for n in names] == [
        ("email", "cons_optout___email"), ("sms", "cons_optout___sms"),
        ("phone", "cons_optout___phone"), ("letter", "cons_optout___letter")]
    every = project.export_field_names()
    assert {"original_field_name": "allocation_complete", "choice_value": "",
            "export_field_name": "allocation_complete"} in every


def test_csv_and_xml_formats_for_project_contents(project: redcap.Project) -> None:
    csv_text = project.export_instruments(format_type="csv")
    assert pd.read_csv(io.StringIO(csv_text))["instrument_name"].iloc[-1] == "diary"
    root = ET.fromstring(project.export_events(format_type="xml"))
    assert next(i.findtext("unique_event_name") for i in root.iter("item")) == BASELINE
    info = ET.fromstring(project.export_project_info(format_type="xml"))
    assert info.findtext("is_longitudinal") == "1"


def test_dags_export_is_empty_for_a_project_without_groups(project: redcap.Project) -> None:
    assert project.export_dags() == []


def test_unknown_token_is_forbidden_and_malformed_token_unauthorized(
        perpain: PerpainProject) -> None:
    statuses = StatusLog()
    stranger = redcap.Project(perpain.api_url, "0" * 32, hooks={"response": [statuses.hook]})
    with pytest.raises(RedcapError) as err:
        stranger.export_version()
    assert "You do not have permissions to use the API" in error_message(err)
    assert statuses.last == 403
    with pytest.raises(RedcapError) as err:
        stranger.export_records()
    assert error_message(err) == "You do not have permissions to use the API"
    # PyCap refuses a token of the wrong length itself; its request layer still reaches the API
    bad = redcap.request._RCRequest(perpain.api_url, {"token": "not-hex", "content": "record",
                                                      "format": "json"},
                                    redcap.request._ContentConfig(False, False))
    with pytest.raises(RedcapError, match="not valid"):
        bad.execute(verify_ssl=True, return_headers=False, file=None,
                    hooks={"response": [statuses.hook]})
    assert statuses.last == 401


def test_unknown_content_is_a_bad_request(project: redcap.Project,
                                          perpain: PerpainProject) -> None:
    payload = project._initialize_payload("noSuchContent", format_type="json")
    with pytest.raises(RedcapError) as err:
        project._call_api(payload, "json")
    assert error_message(err) == 'The value of the parameter "content" is not valid'
    assert perpain.statuses.last == 400


def test_a_second_token_is_another_user_of_the_same_project(
        emulator: RunningEmulator, perpain: PerpainProject) -> None:
    token = emulator.emulator.add_token(perpain.pid, "data_manager")
    assert perpain.project(token).export_project_info()["project_id"] == perpain.pid
    perpain.project(token).import_records([{"record_id": "1", "redcap_event_name": BASELINE}])
    assert perpain.project().export_logging(log_type="record")[0]["username"] == "data_manager"


def test_classic_project_has_no_events_so_pycap_sees_it_as_not_longitudinal(
        emulator: RunningEmulator, perpain: PerpainProject) -> None:
    _, token = emulator.emulator.create_empty("Classic", longitudinal=False)
    classic = perpain.project(token)
    assert classic.is_longitudinal is False
    with pytest.raises(RedcapError) as err:
        classic.export_instrument_event_mappings()
    assert error_message(err) == "You cannot export form/event mappings for classic projects"
    assert classic.import_records([{"record_id": "1"}]) == {"count": 1}
    assert classic.export_records() == [{"record_id": "1", "my_first_instrument_complete": "0"}]
