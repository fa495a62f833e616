"""content=record through PyCap: import (validation, overwrite behaviour, return content,
formats, EAV, repeating instruments), export (filters, labels, formats) and delete."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pandas as pd
import pytest
import redcap
from redcap import RedcapError

from sim.redcap.testing import SettableClock

from .conftest import BASELINE, PerpainProject, error_message

AE = "adverse_event"


def demographics(record: str, **values: object) -> dict[str, object]:
    return {"record_id": record, "redcap_event_name": BASELINE, **values}


def one(project: redcap.Project, record: str, field: str) -> str:
    rows = project.export_records(records=[record], fields=[field], events=[BASELINE])
    return rows[0][field]


def test_import_then_export_returns_the_values_as_strings(project: redcap.Project) -> None:
    assert project.import_records([demographics("1", dem_age=45, dem_sex=1)]) == {"count": 1}
    rows = project.export_records(fields=["dem_age", "dem_sex"])
    assert rows == [{"record_id": "1", "redcap_event_name": BASELINE,
                     "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
                     "dem_age": "45", "dem_sex": "1"}]


def test_form_status_is_exported_and_set_to_incomplete_when_data_arrives(
        project: redcap.Project) -> None:
    project.import_records([demographics("1", dem_age=45)])
    row = project.export_records(forms=["demographics"])[0]
    assert row["demographics_complete"] == "0"
    assert row["record_id"] == "1"
    project.import_records([demographics("1", demographics_complete=2)])
    assert one(project, "1", "demographics_complete") == "2"


def test_a_bad_value_is_refused_with_redcaps_error_lines_and_nothing_is_imported(
        project: redcap.Project, perpain: PerpainProject) -> None:
    rows = [demographics("1", dem_age=45), demographics("2", dem_age="old", dem_sex=3)]
    with pytest.raises(RedcapError) as err:
        project.import_records(rows)
    message = error_message(err)
    assert perpain.statuses.last == 400
    assert '"2","dem_age","old","The value you provided could not be validated' in message
    assert '"2","dem_sex","3","The value is not a valid category for dem_sex"' in message
    assert project.export_records() == []


def test_force_minmax_refuses_out_of_range_age_but_soft_ranges_only_warn(
        project: redcap.Project) -> None:
    with pytest.raises(RedcapError, match="outside the allowed range"):
        project.import_records([demographics("1", dem_age=17)])
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE,
                             "scr_pain_months": 999}])  # max 720 without @FORCE-MINMAX
    assert one(project, "1", "scr_pain_months") == "999"


def test_unknown_field_refuses_the_whole_import(project: redcap.Project,
                                                perpain: PerpainProject) -> None:
    with pytest.raises(RedcapError, match="not found in the project as real data fields: "
                                          "arm, cluster"):
        project.import_records([demographics("1", dem_age=40, cluster="DYS", arm="x")])
    assert perpain.statuses.last == 400
    assert project.export_records() == []


def test_field_on_an_instrument_not_designated_for_the_event_is_refused(
        project: redcap.Project) -> None:
    with pytest.raises(RedcapError) as err:
        project.import_records([{"record_id": "1", "redcap_event_name": "week_4_arm_1",
                                 "dem_age": 40}])
    assert error_message(err) == (
        '"1","dem_age","40","This field (\'dem_age\') exists on an instrument that is not '
        "designated for the event named 'Week 4 (Arm 1: All participants)'. You are not allowed "
        'to import data for this field into this event."')
    with pytest.raises(RedcapError, match="not a valid unique event name"):
        project.import_records([{"record_id": "1", "redcap_event_name": "week_5_arm_1"}])


def test_normal_keeps_stored_values_for_blanks_and_overwrite_erases_them(
        project: redcap.Project) -> None:
    project.import_records([demographics("1", dem_age=45, dem_sex=2)])
    project.import_records([demographics("1", dem_age="", dem_sex=1)])
    assert (one(project, "1", "dem_age"), one(project, "1", "dem_sex")) == ("45", "1")
    project.import_records([demographics("1", dem_age="")], overwrite="overwrite")
    assert one(project, "1", "dem_age") == ""


def test_checkbox_choices_are_columns_and_zero_unchecks(project: redcap.Project) -> None:
    project.import_records([demographics("1", cons_optout___sms=1, cons_optout___letter=1)])
    row = project.export_records(fields=["cons_optout"])[0]
    assert {k: v for k, v in row.items() if k.startswith("cons_optout")} == {
        "cons_optout___email": "0", "cons_optout___sms": "1", "cons_optout___phone": "0",
        "cons_optout___letter": "1"}
    project.import_records([demographics("1", cons_optout___sms=0)])
    assert one(project, "1", "cons_optout___sms") == "0"
    assert one(project, "1", "cons_optout___letter") == "1"


def test_return_content_ids_nothing_and_auto_ids_with_forced_numbering(
        project: redcap.Project) -> None:
    assert project.import_records([demographics("7", dem_age=30)], return_content="ids") == ["7"]
    assert project.import_records([demographics("8", dem_age=30)],
                                  return_content="nothing") == [{}]
    answer = project.import_records([demographics("x", dem_age=31), demographics("y", dem_age=32)],
                                    return_content="auto_ids", force_auto_number=True)
    assert answer == ["9,x", "10,y"]
    assert project.generate_next_record_name() == "11"


def test_repeating_instances_are_separate_rows_and_new_appends(project: redcap.Project) -> None:
    base = {"record_id": "1", "redcap_event_name": BASELINE, "redcap_repeat_instrument": AE}
    project.import_records([{**base, "redcap_repeat_instance": 1, "ae_term": "headache"},
                            {**base, "redcap_repeat_instance": "new", "ae_term": "nausea"}])
    rows = project.export_records(forms=[AE])
    repeats = [(r["redcap_repeat_instrument"], r["redcap_repeat_instance"], r["ae_term"])
               for r in rows if r["redcap_repeat_instrument"]]
    assert repeats == [(AE, 1, "headache"), (AE, 2, "nausea")]


def test_repeating_fields_need_the_repeat_columns(project: redcap.Project) -> None:
    with pytest.raises(RedcapError, match="redcap_repeat_instrument and redcap_repeat_instance"):
        project.import_records([demographics("1", ae_term="headache")])


def test_csv_and_xml_imports_and_exports(project: redcap.Project) -> None:
    data = "record_id,redcap_event_name,dem_age,dem_sex\n1,t0_baseline_arm_1,50,2\n"
    assert project.import_records(data, import_format="csv") == {"count": 1}
    xml = ('<?xml version="1.0" encoding="UTF-8" ?><records><item><record_id>2</record_id>'
           f'<redcap_event_name>{BASELINE}</redcap_event_name><dem_age>60</dem_age></item>'
           '</records>')
    assert project.import_records(xml, import_format="xml") == {"count": 1}
    text = project.export_records(format_type="csv", fields=["dem_age"])
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame["dem_age"]) == [50, 60]
    root = ET.fromstring(project.export_records(format_type="xml", fields=["dem_age"]))
    assert [i.findtext("dem_age") for i in root.iter("item")] == ["50", "60"]
    df = project.export_records(format_type="df", fields=["dem_age"])
    assert df.loc[(1, BASELINE), "dem_age"] == 50


def test_errors_come_back_in_csv_and_xml_too(project: redcap.Project) -> None:
    with pytest.raises(RedcapError, match=r"^ERROR: The following fields were not found"):
        project.import_records("record_id,bogus\n1,2\n", import_format="csv",
                               return_format_type="csv")
    with pytest.raises(RedcapError, match=r"<hash>\s*<error>The following fields"):
        project.import_records("record_id,bogus\n1,2\n", import_format="csv",
                               return_format_type="xml")


def test_eav_import_and_export(project: redcap.Project) -> None:
    rows = [{"record": "1", "redcap_event_name": BASELINE, "field_name": "dem_age", "value": "41"},
            {"record": "1", "redcap_event_name": BASELINE, "field_name": "cons_optout",
             "value": "email"}]
    payload = project._initialize_import_payload(rows, "json", "json", "record")
    payload.update(type="eav", overwriteBehavior="normal", returnContent="count")
    assert project._call_api(payload, "count_dict") == {"count": 1}
    exported = project.export_records(record_type="eav", fields=["dem_age", "cons_optout"])
    # the record ID's own row first (once per record and event), then REDCap's field order
    assert [(r["field_name"], r["value"]) for r in exported] == [
        ("record_id", "1"), ("cons_optout", "email"), ("dem_age", "41")]
    payload = project._initialize_import_payload(exported, "json", "json", "record")
    payload.update(type="eav", overwriteBehavior="normal", returnContent="count")
    assert project._call_api(payload, "count_dict") == {"count": 1}  # it imports back as is


def test_labels_for_choices_events_and_checkboxes(project: redcap.Project) -> None:
    project.import_records([demographics("1", dem_sex=1, cons_optout___sms=1)])
    row = project.export_records(raw_or_label="label", fields=["dem_sex", "cons_optout"])[0]
    assert row["dem_sex"] == "Female"
    assert row["redcap_event_name"] == "T0 baseline (Arm 1: All participants)"
    assert row["cons_optout___sms"] == "Checked"
    row = project.export_records(raw_or_label="label", fields=["cons_optout"],
                                 export_checkbox_labels=True, event_name="unique")[0]
    assert (row["cons_optout___sms"], row["cons_optout___email"]) == ("SMS (text message)", "")
    assert row["redcap_event_name"] == BASELINE


def test_record_event_and_field_filters(project: redcap.Project,
                                        perpain: PerpainProject) -> None:
    project.import_records([demographics(str(n), dem_age=20 + n) for n in (1, 2, 10)])
    project.import_records([{"record_id": "2", "redcap_event_name": "week_4_arm_1",
                             "pgic_rating": 3}])
    assert [r["record_id"] for r in project.export_records(fields=["dem_age"])] == [
        "1", "2", "2", "10"]
    rows = project.export_records(records=["2"], events=["week_4_arm_1"])
    assert [(r["redcap_event_name"], r["pgic_rating"]) for r in rows] == [("week_4_arm_1", "3")]
    with pytest.raises(RedcapError) as err:
        project.export_records(fields=["nope"])
    assert error_message(err) == (
        "The following values in the parameter \"fields\" are not valid: 'nope'")
    assert perpain.statuses.last == 400
    with pytest.raises(RedcapError, match="parameter \"events\" are not valid"):
        project.export_records(events=["t9_arm_1"])


def test_date_range_returns_records_changed_in_it(project: redcap.Project,
                                                  clock: SettableClock) -> None:
    clock.set(datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC))
    project.import_records([demographics("1", dem_age=40), demographics("2", dem_age=41)])
    clock.set(datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC))
    project.import_records([demographics("2", dem_age=42), demographics("3", dem_age=43)])
    since = project.export_records(fields=["dem_age"], date_begin=datetime(2024, 5, 1, 10, 30))
    assert [r["record_id"] for r in since] == ["2", "3"]
    until = project.export_records(fields=["dem_age"], date_end=datetime(2024, 5, 1, 10, 30))
    assert [r["record_id"] for r in until] == ["1", "2"]


def test_delete_record_instrument_and_missing_record(project: redcap.Project,
                                                     perpain: PerpainProject) -> None:
    project.import_records([demographics("1", dem_age=40, cons_given=1),
                            demographics("2", dem_age=50)])
    assert project.delete_records(["1"], instrument="demographics", event=BASELINE) == 1
    row = project.export_records(records=["1"], fields=["dem_age", "cons_given"])[0]
    assert (row["dem_age"], row["cons_given"]) == ("", "1")
    assert project.delete_records(["2"]) == 1
    assert [r["record_id"] for r in project.export_records(fields=["record_id"])] == ["1"]
    with pytest.raises(RedcapError, match="The following records do not exist: 2, 9"):
        project.delete_records(["2", "9"])
    assert perpain.statuses.last == 400


def test_filter_logic_common_subset(project: redcap.Project) -> None:
    project.import_records([demographics("1", dem_age=30, dem_sex=1, cons_optout___sms=1),
                            demographics("2", dem_age=50, dem_sex=2),
                            demographics("3", dem_age=70, dem_sex=1)])
    project.import_records([{"record_id": "2", "redcap_event_name": "week_4_arm_1",
                             "pgic_rating": "3"}])

    def ids(logic: str) -> list[str]:
        return [r["record_id"] for r in project.export_records(
            fields=["record_id"], events=[BASELINE], filter_logic=logic)]

    assert ids("[dem_age] > 40") == ["2", "3"]
    assert ids("[dem_age] >= 50 and [dem_sex] = '1'") == ["3"]
    assert ids("([dem_age] < 40 or [dem_age] > 60) and [dem_sex] <> 2") == ["1", "3"]
    assert ids("[cons_optout(sms)] = '1'") == ["1"]
    assert ids("[week_4_arm_1][pgic_rating] = 3") == ["2"]
    assert ids('[dem_age] = ""') == []
    for bad, why in (("datediff([dem_age], 'today', 'y') > 1", "does not evaluate"),
                     ("[nope] = 1", "unknown field [nope]"),
                     ("[nowhere_arm_1][dem_age] = 1", "unknown event [nowhere_arm_1]"),
                     ("(" * 3000 + "[dem_age] = 1" + ")" * 3000, "longer than"),
                     ("(" * 1500 + "[dem_age] = 1" + ")" * 1500, "too deeply")):
        with pytest.raises(RedcapError) as err:
            ids(bad)
        assert why in error_message(err)


def test_label_headers_in_csv_and_unemulated_parameters_refused(project: redcap.Project) -> None:
    project.import_records([demographics("1", dem_age=30, cons_optout___sms=1)])
    text = project.export_records(format_type="csv", fields=["record_id", "dem_age", "cons_optout"],
                                  raw_or_label_headers="label", events=[BASELINE])
    header = text.splitlines()[0].split(",")
    assert header[:4] == ["Record ID", "Event Name", "Repeat Instrument", "Repeat Instance"]
    assert "Complete?" not in header[:4] and any(h.startswith('"') or "(choice=" in h
                                                 for h in header)
    with pytest.raises(RedcapError) as err:
        project.export_records(decimal_character=",")
    assert "decimalCharacter" in error_message(err)
    with pytest.raises(RedcapError) as err:
        project.export_records(raw_or_label_headers="both")
    assert error_message(err) == 'The value of the parameter "rawOrLabelHeaders" is not valid'
