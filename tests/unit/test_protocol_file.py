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
