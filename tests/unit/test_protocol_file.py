"""The protocol file: the shipped one validates; each kind of mistake names its key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.protocol import ProtocolError, load_protocol, parse_protocol

SHIPPED = Path("protocols/perpain-pilot.yaml")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text())


def test_shipped_protocol_validates() -> None:
    protocol = load_protocol(SHIPPED)
    assert protocol.trial.id == "perpain-pilot"
    assert [c.matching_module for c in protocol.clusters] == ["PERT", "EDDT", "EMDI"]
    assert protocol.reminders.max_per_timepoint == 5


def _error(raw: dict[str, Any], mutate) -> str:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ProtocolError) as info:
        parse_protocol(data, "perpain-pilot.yaml")
    return str(info.value)


def test_unknown_key_is_named(raw) -> None:
    message = _error(raw, lambda d: d["randomization"].update(block_lenghts=[4]))
    assert "randomization.block_lenghts: unknown key" in message


def test_missing_key_is_named(raw) -> None:
    message = _error(raw, lambda d: d["trial"].pop("title"))
    assert "trial.title: required key is missing" in message


def test_wrong_type_is_named(raw) -> None:
    message = _error(raw, lambda d: d["reminders"].update(max_per_timepoint="five"))
    assert "reminders.max_per_timepoint" in message


def test_item_in_a_list_is_named_by_index(raw) -> None:
    message = _error(raw, lambda d: d["modules"][1].update(weeks=0))
    assert "modules[1].weeks" in message


def test_unknown_matching_module_is_named(raw) -> None:
    message = _error(raw, lambda d: d["clusters"][2].update(matching_module="EMDR"))
    assert "clusters[2].matching_module" in message and "'EMDR'" in message


def test_block_length_that_breaks_the_ratio_is_named(raw) -> None:
    message = _error(raw, lambda d: d["randomization"].update(block_lengths=[4, 6]))
    assert "randomization.block_lengths[1]: 6 is not a multiple of 4" in message


def test_timepoint_anchored_to_a_later_timepoint_is_named(raw) -> None:
    def swap(d: dict[str, Any]) -> None:
        d["timepoints"][4]["anchor"] = "t3"

    assert "timepoints[4].anchor" in _error(raw, swap)


def test_a_survey_that_is_not_a_form_of_its_timepoint_is_named(raw) -> None:
    message = _error(raw, lambda d: d["timepoints"][1].update(surveys=["mpid_ps", "hads"]))
    assert "timepoints[1].surveys: 'hads' is not one of this timepoint's forms" in message


def test_the_old_made_up_questionnaire_link_is_refused(raw) -> None:
    message = _error(raw, lambda d: d["reminders"]["messages"].update(
        questionnaire_link="https://survey.example/q/{token}"))
    assert "reminders.messages.questionnaire_link: unknown key" in message


def test_duplicate_keys_are_named(raw) -> None:
    message = _error(raw, lambda d: d["arms"].append(dict(d["arms"][0])))
    assert "arms: duplicate keys ['personalized']" in message


def test_too_many_reminder_steps_are_refused(raw) -> None:
    def six(d: dict[str, Any]) -> None:
        d["reminders"]["steps"].append({"day": 30, "channel": "email"})

    assert "max_per_timepoint" in _error(raw, six)


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trial: [unclosed")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(bad)


def test_data_retention_is_read_and_a_bad_value_is_named(raw) -> None:
    protocol = load_protocol(SHIPPED)
    assert (protocol.data_retention.bus_days, protocol.data_retention.outbox_sent_days) == (30, 7)
    message = _error(raw, lambda d: d["data_retention"].update(bus_days=0.5))
    assert "data_retention.bus_days" in message


# ── reports section (feasibility criteria as protocol data) ──────────────
def test_shipped_feasibility_criteria() -> None:
    reports = load_protocol(SHIPPED).reports
    assert reports is not None
    assert [c.key for c in reports.feasibility] == [
        "recruitment", "assessment_completion", "randomized", "retention"]
    assert all(c.ci_method == "wilson" and c.confidence == 0.95 for c in reports.feasibility)


def test_unknown_flow_quantity_is_named(raw) -> None:
    message = _error(raw, lambda d: d["reports"]["feasibility"][1].update(numerator="finished"))
    assert "reports.feasibility[1].numerator" in message and "'finished'" in message


def test_unknown_timepoint_in_a_criterion_is_named(raw) -> None:
    message = _error(raw, lambda d: d["reports"]["feasibility"][3].update(numerator="complete:t3"))
    assert "reports.feasibility[3].numerator: 't3' is not a timepoint" in message


def test_thresholds_out_of_order_are_named(raw) -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["reports"]["feasibility"][2]["thresholds"] = [
            {"at_least": 90, "verdict": "readjust"}, {"at_least": 105, "verdict": "given"},
            {"verdict": "not_given"}]
    message = _error(raw, mutate)
    assert "reports.feasibility[2]" in message and "thresholds[1].at_least" in message


def test_proportion_threshold_above_one_is_named(raw) -> None:
    message = _error(raw, lambda d: d["reports"]["feasibility"][1]["thresholds"][0].update(at_least=95))
    assert "reports.feasibility[1]" in message and "not a proportion" in message


def test_lost_to_follow_up_must_be_a_reason_key(raw) -> None:
    message = _error(raw, lambda d: d["reports"]["withdrawal"].update(lost_to_follow_up=["gone"]))
    assert "reports.withdrawal" in message and "'gone'" in message


def test_unknown_key_in_reports_is_named(raw) -> None:
    message = _error(raw, lambda d: d["reports"]["recruitment"].update(targte=100))
    assert "reports.recruitment.targte: unknown key" in message


def test_an_alarm_batch_that_could_exhaust_a_stratum_unseen_is_named(raw) -> None:
    message = _error(raw, lambda d: d["randomization"].update(low_slots_alarm_batch=12))
    assert "randomization" in message and "low_slots_alarm_batch (12)" in message
