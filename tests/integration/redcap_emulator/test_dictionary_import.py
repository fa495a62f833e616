"""The data dictionary and event files import into the emulator the way REDCap's API
takes them, and what REDCap would refuse is refused with the reasons, changing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import redcap
from redcap import RedcapError

from sim.redcap import DesignError, load_project_folder
from sim.redcap.testing import PERPAIN_REDCAP, RunningEmulator

from .conftest import PerpainProject, error_message


def read(name: str) -> str:
    return (PERPAIN_REDCAP / name).read_text(encoding="utf-8")


def test_perpain_files_build_the_project_step_by_step_through_pycap(
        emulator: RunningEmulator, perpain: PerpainProject) -> None:
    _, token = emulator.emulator.create_empty("PerPAIN via API", longitudinal=True)
    blank = perpain.project(token)
    assert blank.import_metadata(read("data_dictionary.csv"), import_format="csv") == 295
    assert blank.import_arms(read("arms.csv"), import_format="csv", override=1) == 1
    assert blank.import_events(read("events.csv"), import_format="csv", override=1) == 6
    assert blank.import_instrument_event_mappings(
        read("instrument_event_mapping.csv"), import_format="csv") == 39
    assert blank.import_repeating_instruments_events(
        read("repeating_instruments.csv"), import_format="csv") == 6
    reference = perpain.project()
    assert blank.export_metadata() == reference.export_metadata()
    assert blank.export_instrument_event_mappings() == reference.export_instrument_event_mappings()
    assert [e["unique_event_name"] for e in blank.export_events()] == [
        e["unique_event_name"] for e in reference.export_events()]
    assert (blank.export_repeating_instruments_events()
            == reference.export_repeating_instruments_events())


def test_a_broken_dictionary_is_refused_with_every_reason_and_changes_nothing(
        project: redcap.Project, perpain: PerpainProject) -> None:
    rows = project.export_metadata()
    before = list(rows)
    rows = [dict(r) for r in rows]
    by_name = {r["field_name"]: r for r in rows}
    by_name["scr_mobile_ok"]["field_type"] = "slidr"
    by_name["scr_date"]["field_name"] = "scr_diagnosis"
    by_name["cons_given"]["branching_logic"] = "[no_such_field] = '1'"
    by_name["dem_sex"]["select_choices_or_calculations"] = "1, Female | 1, Male"
    with pytest.raises(RedcapError) as err:
        project.import_metadata(rows)
    message = error_message(err)
    assert perpain.statuses.last == 400
    for expected in ("'slidr' is not a valid field type", "used more than once",
                     "unknown field [no_such_field]", "The choice code '1' is used twice"):
        assert expected in message
    assert project.export_metadata() == before


def test_dropping_a_form_from_the_dictionary_drops_it_from_events(
        project: redcap.Project) -> None:
    rows = [r for r in project.export_metadata() if r["form_name"] != "work_medication"]
    project.import_metadata(rows)
    forms = {m["form"] for m in project.export_instrument_event_mappings()}
    assert "work_medication" not in forms and "neq" in forms


def copy_folder(tmp_path: Path) -> Path:
    for f in PERPAIN_REDCAP.glob("*.csv"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def test_folder_checks_catch_renamed_events_and_unknown_mapped_forms(tmp_path: Path) -> None:
    folder = copy_folder(tmp_path)
    events = (folder / "events.csv").read_text(encoding="utf-8")
    (folder / "events.csv").write_text(events.replace("Week 4,", "Week four,"), encoding="utf-8")
    mapping = (folder / "instrument_event_mapping.csv").read_text(encoding="utf-8")
    (folder / "instrument_event_mapping.csv").write_text(
        mapping + "1,t0_baseline_arm_1,sf12\n", encoding="utf-8")
    with pytest.raises(DesignError) as err:
        load_project_folder(folder)
    assert err.value.problems == [
        "events row 4: unique_event_name 'week_4_arm_1' is not the name REDCap generates from "
        "event name 'Week four' ('week_four_arm_1')"]
    (folder / "events.csv").write_text(events, encoding="utf-8")
    with pytest.raises(DesignError) as err:
        load_project_folder(folder)
    assert err.value.problems == ["(mapping) 'sf12' is not an instrument of this project."]


def test_folder_checks_catch_forms_split_apart_and_bad_validation(tmp_path: Path) -> None:
    folder = copy_folder(tmp_path)
    lines = (folder / "data_dictionary.csv").read_text(encoding="utf-8").splitlines()
    moved = lines.pop(2)  # a screening field after the consent form
    lines.insert(12, moved)
    lines[3] = lines[3].replace(",integer,", ",integr,") if ",integer," in lines[3] else lines[3]
    (folder / "data_dictionary.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DesignError) as err:
        load_project_folder(folder)
    problems = "\n".join(err.value.problems)
    assert "The fields of form 'screening' are not together" in problems
    assert "'integr' is not a valid validation type." in problems
    assert err.value.field is not None
