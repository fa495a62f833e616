"""Case versioning: follow-ups append versions, keep the old ones, and say what changed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.safety.domain import (
    INITIAL_REASON,
    InvalidFollowUp,
    audit_entry,
    diff,
    follow_up,
    open_case,
    redcap_case_id,
    significant_changes,
)

from .safety_factories import AWARE, criteria, make_event, serious_event

LATER = AWARE + timedelta(days=2)


def test_a_new_case_has_the_initial_report_as_version_1() -> None:
    case = open_case("ae-P-001-1", make_event(), recorded_by="nurse")
    v = case.latest
    assert (v.number, v.reason, v.received_at, v.recorded_by) == (
        1, INITIAL_REASON, AWARE, "nurse")
    assert case.participant == "P-001"


def test_a_follow_up_appends_a_version_and_keeps_every_earlier_one() -> None:
    first = make_event()
    case = open_case("c1", first, recorded_by="nurse")
    updated = follow_up(case, make_event(outcome="recovering"), reason="phone call",
                        received_at=LATER, recorded_by="pi")
    assert len(case.versions) == 1  # the original is untouched
    assert [v.number for v in updated.versions] == [1, 2]
    assert updated.version(1).event == first
    assert updated.latest.reason == "phone call" and updated.latest.recorded_by == "pi"
    again = follow_up(updated, make_event(outcome="recovered"), reason="visit",
                      received_at=LATER + timedelta(days=1), recorded_by="pi")
    assert [v.event.outcome.value for v in again.versions] == [
        "recovered", "recovering", "recovered"]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"reason": "  "}, "reason"),
    ({"event": make_event(participant="P-002", outcome="recovering")}, "participant"),
    ({"received_at": AWARE - timedelta(hours=1)}, "received_at"),
    ({"received_at": LATER.replace(tzinfo=None)}, "received_at"),
    ({"event": make_event()}, "(event)"),  # a redelivered, unchanged form
])
def test_a_bad_follow_up_is_refused_naming_the_field(kwargs: dict, field: str) -> None:
    case = open_case("c1", make_event(), recorded_by="nurse")
    args = {"event": make_event(outcome="recovering"), "reason": "call",
            "received_at": LATER, "recorded_by": "pi", **kwargs}
    with pytest.raises(InvalidFollowUp) as info:
        follow_up(case, **args)
    assert info.value.field == field


def test_asking_for_a_version_that_does_not_exist_is_refused() -> None:
    case = open_case("c1", make_event(), recorded_by="nurse")
    with pytest.raises(InvalidFollowUp):
        case.version(2)


def test_diff_lists_each_changed_field_before_and_after() -> None:
    before = make_event()
    after = make_event(outcome="recovering", seriousness=criteria(hospitalisation=True))
    changes = {c.field: (c.before, c.after) for c in diff(before, after)}
    assert changes == {"outcome": ("recovered", "recovering"),
                       "seriousness.hospitalisation": (False, True)}


def test_diff_of_a_newly_coded_event_shows_the_meddra_fields() -> None:
    coded = make_event(meddra={"version": "27.0", "pt_code": "10033664"})
    changes = {c.field: (c.before, c.after) for c in diff(make_event(), coded)}
    assert changes["meddra.pt_code"] == (None, "10033664")
    assert changes["meddra.version"] == (None, "27.0")


@pytest.mark.parametrize(("before", "after", "found"), [
    ({}, {"seriousness": criteria(hospitalisation=True)},
     ["serious", "criterion:hospitalisation"]),
    ({"seriousness": criteria(hospitalisation=True)},
     {"seriousness": criteria(hospitalisation=True, life_threatening=True)},
     ["criterion:life_threatening"]),
    ({}, {"seriousness": criteria(death=True), "outcome": "fatal"},
     ["serious", "criterion:death", "fatal"]),
    ({"relatedness": "unlikely"}, {"relatedness": "probably"}, ["related"]),
    ({"expected": True}, {"expected": False}, ["unexpected"]),
    ({"verbatim_term": "sleep disturbance"}, {"verbatim_term": "nightmares"}, ["unexpected"]),
    ({"severity": "mild"}, {"severity": "severe"}, []),
    ({"seriousness": criteria(hospitalisation=True)}, {}, []),  # downgrade
    ({"relatedness": "probably"}, {"relatedness": "definitely"}, []),
    ({}, {"narrative": "more detail"}, []),
])
def test_significant_new_information_is_what_the_docstring_defines(
        rules, before: dict, after: dict, found: list[str]) -> None:
    assert significant_changes(make_event(**before), make_event(**after), rules) == found


def test_an_initial_report_is_not_new_information(rules) -> None:
    assert significant_changes(None, serious_event(), rules) == []


def test_audit_entry_carries_reason_author_changes_and_significance(rules) -> None:
    case = open_case("c1", make_event(), recorded_by="nurse")
    case = follow_up(case, serious_event(), reason="admitted", received_at=LATER,
                     recorded_by="pi")
    entry = audit_entry(case, 2, rules)
    assert entry["reason"] == "admitted" and entry["recorded_by"] == "pi"
    assert entry["received_at"] == LATER.isoformat()
    assert {c["field"] for c in entry["changes"]} == {"seriousness.hospitalisation",
                                                       "severity"}
    assert entry["significant"] == ["serious", "criterion:hospitalisation"]
    assert audit_entry(case, 1, rules)["changes"] == []


def test_redcap_case_id_is_one_per_repeat_instance() -> None:
    assert redcap_case_id("P-001", 2) == redcap_case_id("P-001", 2) == "ae-P-001-2"
    assert redcap_case_id("P-001", 3) != redcap_case_id("P-001", 2)


def test_a_case_round_trips_through_json_for_storage() -> None:
    case = follow_up(open_case("c1", make_event(), recorded_by="n"), serious_event(),
                     reason="admitted", received_at=LATER, recorded_by="pi")
    assert type(case).model_validate_json(case.model_dump_json()) == case
