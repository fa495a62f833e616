"""Adverse event validation: every field, cross-field rules, seriousness vs severity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.safety.domain import (
    InvalidAdverseEvent,
    Outcome,
    Severity,
    assess,
    is_expected,
    parse_adverse_event,
    plan_obligations,
)
from services.safety.domain.cases import open_case

from .safety_factories import AWARE, NOW, criteria, event_data, make_event

REQUIRED = ["participant", "onset_date", "awareness_time", "verbatim_term", "severity",
            "seriousness", "relatedness", "outcome", "action_taken", "reporter"]


def problems_of(data: dict, now: datetime = NOW) -> dict[str, str]:
    with pytest.raises(InvalidAdverseEvent) as info:
        parse_adverse_event(data, now=now)
    found: dict[str, str] = {}
    for p in info.value.problems:
        found[p.field] = f"{found[p.field]} | {p.message}" if p.field in found else p.message
    return found


def test_a_complete_event_is_accepted_with_awareness_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    event = make_event(awareness_time=AWARE.astimezone(berlin).isoformat())
    assert event.awareness_time == AWARE
    assert event.awareness_time.utcoffset() == timedelta(0)
    assert event.severity is Severity.MODERATE


@pytest.mark.parametrize("field", REQUIRED)
def test_a_missing_required_field_is_named(field: str) -> None:
    data = event_data()
    del data[field]
    assert problems_of(data)[field] == "required"


@pytest.mark.parametrize("criterion", ["death", "life_threatening", "hospitalisation",
                                       "disability", "congenital_anomaly",
                                       "medically_important"])
def test_a_missing_seriousness_criterion_is_named(criterion: str) -> None:
    ser = criteria()
    del ser[criterion]
    assert f"seriousness.{criterion}" in problems_of(event_data(seriousness=ser))


@pytest.mark.parametrize(("field", "value"), [
    ("participant", ""),
    ("participant", "x" * 101),
    ("onset_date", "09.03.2025"),
    ("onset_date", "2025-02-30"),
    ("awareness_time", "2025-03-10T08:00:00"),  # no zone: ambiguous instant
    ("awareness_time", "yesterday"),
    ("verbatim_term", "   "),
    ("verbatim_term", "x" * 251),
    ("severity", "catastrophic"),
    ("grade", 0),
    ("grade", 6),
    ("relatedness", "maybe"),
    ("expected", "perhaps"),
    ("outcome", "dead"),
    ("action_taken", "ignored"),
    ("reporter", ""),
    ("narrative", "x" * 20001),
])
def test_a_malformed_field_is_named(field: str, value: object) -> None:
    assert field in problems_of(event_data(**{field: value}))


@pytest.mark.parametrize(("meddra", "field"), [
    ({"version": "27", "llt_code": "10033664"}, "meddra.version"),
    ({"version": "27.0", "llt_code": "1003366"}, "meddra.llt_code"),
    ({"version": "27.0", "pt_code": "abcdefgh"}, "meddra.pt_code"),
    ({"llt_code": "10033664"}, "meddra.version"),
    ({"version": "27.0"}, "meddra"),
])
def test_malformed_meddra_coding_is_named(meddra: dict, field: str) -> None:
    assert field in problems_of(event_data(meddra=meddra))


def test_meddra_coding_is_optional_and_kept_when_given() -> None:
    assert make_event().meddra is None
    coded = make_event(meddra={"version": "27.0", "llt_code": "10033664"})
    assert coded.meddra is not None and coded.meddra.llt_code == "10033664"


def test_an_unknown_field_is_refused() -> None:
    assert problems_of(event_data(serious=True))["serious"] == "unknown field"


def test_a_body_that_is_not_an_object_is_refused() -> None:
    assert "(body)" in problems_of(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_every_problem_is_listed_at_once() -> None:
    data = event_data(severity="huge", reporter="", outcome="fatal")
    del data["verbatim_term"]
    found = problems_of(data)
    # field errors and the death/outcome contradiction together
    assert {"severity", "reporter", "verbatim_term", "seriousness.death"} <= set(found)


def test_onset_after_awareness_is_contradictory() -> None:
    data = event_data(onset_date="2025-03-12", awareness_time=AWARE.isoformat())
    found = problems_of(data, now=NOW + timedelta(days=5))
    assert found["onset_date"] == "onset 2025-03-12 is after awareness 2025-03-10"


def test_onset_one_day_after_awareness_is_caught() -> None:
    # awareness 08:00 UTC on the 10th is the 10th in every time zone
    data = event_data(onset_date="2025-03-11", awareness_time=AWARE.isoformat())
    assert "after awareness" in problems_of(data, now=NOW + timedelta(days=5))["onset_date"]


@pytest.mark.parametrize("criterion", ["death", "hospitalisation", "medically_important"])
def test_a_malformed_seriousness_criterion_is_named(criterion: str) -> None:
    data = event_data(seriousness={**criteria(), criterion: "maybe"})
    assert f"seriousness.{criterion}" in problems_of(data)


def test_onset_on_the_local_day_of_awareness_is_accepted_across_time_zones() -> None:
    # 23:30 UTC on the 9th is already the 10th in Berlin: an onset on the 10th is fine.
    late = datetime(2025, 3, 9, 23, 30, tzinfo=UTC)
    assert make_event(onset_date="2025-03-10", awareness_time=late.isoformat())


def test_awareness_in_the_future_is_refused() -> None:
    future = NOW + timedelta(minutes=1)
    found = problems_of(event_data(awareness_time=future.isoformat()))
    assert "future" in found["awareness_time"]


def test_awareness_exactly_now_is_accepted() -> None:
    assert make_event(awareness_time=NOW.isoformat()).awareness_time == NOW


def test_onset_in_the_future_is_refused() -> None:
    found = problems_of(event_data(onset_date="2025-03-12",
                                   awareness_time=NOW.isoformat()))
    assert "future" in found["onset_date"]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_adverse_event(event_data(), now=NOW.replace(tzinfo=None))


def test_death_without_fatal_outcome_is_contradictory() -> None:
    found = problems_of(event_data(seriousness=criteria(death=True), outcome="recovered",
                                   severity="severe"))
    assert "fatal" in found["outcome"]


def test_fatal_outcome_without_death_is_contradictory() -> None:
    assert "seriousness.death" in problems_of(event_data(outcome="fatal"))


def test_a_fatal_event_is_consistent() -> None:
    event = make_event(seriousness=criteria(death=True), outcome="fatal", severity="severe",
                       grade=5)
    assert event.outcome is Outcome.FATAL


@pytest.mark.parametrize(("grade", "severity", "ok"), [
    (1, "mild", True), (1, "moderate", False),
    (2, "moderate", True), (2, "severe", False),
    (3, "severe", True), (3, "mild", False),
    (4, "severe", True), (4, "moderate", False),
])
def test_grade_must_agree_with_severity(grade: int, severity: str, ok: bool) -> None:
    data = event_data(grade=grade, severity=severity)
    if ok:
        assert parse_adverse_event(data, now=NOW).grade == grade
    else:
        assert "grade" in problems_of(data)


def test_grade_5_requires_death() -> None:
    assert "grade" in problems_of(event_data(grade=5, severity="severe"))


def test_death_with_a_grade_requires_grade_5() -> None:
    data = event_data(grade=4, severity="severe", seriousness=criteria(death=True),
                      outcome="fatal")
    assert "grade 5" in problems_of(data)["grade"]


def test_severe_but_non_serious_event_is_not_serious_and_starts_no_clock(rules) -> None:
    event = make_event(severity="severe", grade=3, relatedness="definitely")
    assessment = assess(event, rules)
    assert not assessment.serious
    assert plan_obligations(open_case("c1", event, recorded_by="u"), rules, []) == []


def test_mild_event_meeting_one_criterion_is_serious(rules) -> None:
    event = make_event(severity="mild", seriousness=criteria(medically_important=True))
    assert assess(event, rules).serious
    assert plan_obligations(open_case("c1", event, recorded_by="u"), rules, [])


@pytest.mark.parametrize(("term", "expected"), [
    ("Transient increase of pain", True),
    ("  transient   increase of PAIN. ", True),
    ("fatigue after sessions", True),
    ("suicidal ideation", False),
])
def test_expectedness_derives_from_the_protocol_list(rules, term: str, expected: bool) -> None:
    assert is_expected(make_event(verbatim_term=term), rules.expected_events) is expected


@pytest.mark.parametrize("override", [True, False])
def test_clinician_override_of_expectedness_wins(rules, override: bool) -> None:
    event = make_event(verbatim_term="sleep disturbance", expected=override)
    assert is_expected(event, rules.expected_events) is override


@pytest.mark.parametrize(("level", "related"), [
    ("not", False), ("unlikely", False), ("possibly", True), ("probably", True),
    ("definitely", True)])
def test_related_means_a_level_the_protocol_lists(rules, level: str, related: bool) -> None:
    assert assess(make_event(relatedness=level), rules).related is related
