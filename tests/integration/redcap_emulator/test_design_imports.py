"""Arms, events and instrument-event mappings imported as REDCap imports them."""

from __future__ import annotations

import redcap

from .conftest import BASELINE


def test_an_arm_is_listed_once_it_has_an_event(project: redcap.Project) -> None:
    assert project.import_arms([{"arm_num": 2, "name": "Second"}]) == 1
    assert [a["arm_num"] for a in project.export_arms()] == [1]
    assert project.import_events([{"event_name": "Extra", "arm_num": "2"}]) == 1
    assert [(a["arm_num"], a["name"]) for a in project.export_arms()] == [
        (1, "All participants"), (2, "Second")]


def test_arm_override_deletes_every_event_and_mapping_and_they_import_back(
        project: redcap.Project) -> None:
    events, mapping = project.export_events(), project.export_instrument_event_mappings()
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": "40"}])
    assert project.import_arms([{"arm_num": 1, "name": "Renamed"}], override=1) == 1
    assert project.export_arms() == []  # no event left, so no arm listed
    assert project.import_events(events) == len(events)  # an export imports back as is
    assert project.import_instrument_event_mappings(mapping) == len(mapping)
    assert project.export_events() == events
    assert project.export_instrument_event_mappings() == mapping
    assert project.export_records() == []  # the data in the deleted events went with them


def test_event_rows_naming_an_existing_event_rename_it(project: redcap.Project) -> None:
    first = project.export_events()[0]
    row = {**first, "event_name": "T0 baseline", "days_offset": 1, "custom_event_label": "x"}
    assert project.import_events([row]) == 1
    renamed = project.export_events()[0]
    assert (renamed["unique_event_name"], renamed["days_offset"],
            renamed["custom_event_label"]) == (first["unique_event_name"], 1, "x")


def test_a_mapping_import_replaces_the_whole_designation(project: redcap.Project) -> None:
    row = {"arm_num": "1", "unique_event_name": BASELINE, "form": "screening"}
    assert project.import_instrument_event_mappings([row]) == 1
    assert project.export_instrument_event_mappings() == [
        {"arm_num": 1, "unique_event_name": BASELINE, "form": "screening"}]


def test_xml_import_replies_on_one_line_like_redcap(project: redcap.Project) -> None:
    reply = project.import_records("record_id,redcap_event_name\n7," + BASELINE + "\n",
                                   import_format="csv", return_format_type="xml")
    assert reply == '<?xml version="1.0" encoding="UTF-8" ?><count>1</count>'
