"""The adverse event as reported, its validation and its regulatory assessment.

Validation rules beyond each field's own type and range (every broken rule is reported,
with its field, in one `InvalidAdverseEvent`):

- onset_date must not be later than the awareness date. The onset date is a local
  calendar date and awareness a UTC instant, so the awareness date compared is the
  latest calendar date anywhere on earth at that instant (UTC+14): no false alarms
  from time zones, and any onset a day or more after awareness is caught.
- awareness_time must not be after `now`; onset_date not after now's latest date.
- seriousness.death is true if and only if outcome is "fatal".
- grade (optional, CTCAE-style) must agree with severity: 1 = mild, 2 = moderate,
  3–5 = severe; and grade 5 (death related to the event) if and only if
  seriousness.death is true.

Seriousness (the six ICH E2A criteria) is independent of severity: a severe event
that meets no criterion is not serious and starts no reporting clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from services.core.protocol.safety import ClockCondition, SafetyRules

from .errors import FieldProblem, InvalidAdverseEvent
from .vocabulary import SERIOUSNESS_CRITERIA, ActionTaken, Outcome, Relatedness, Severity

_EARTH_LATEST_OFFSET = timedelta(hours=14)  # UTC+14, the furthest-ahead time zone


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Seriousness(_Frozen):
    """The six ICH E2A criteria; any one true makes the event serious."""

    death: bool
    life_threatening: bool
    hospitalisation: bool  # in-patient hospitalisation or its prolongation
    disability: bool  # persistent or significant disability / incapacity
    congenital_anomaly: bool
    medically_important: bool  # other medically important condition

    @property
    def criteria(self) -> tuple[str, ...]:
        return tuple(c for c in SERIOUSNESS_CRITERIA if getattr(self, c))

    @property
    def serious(self) -> bool:
        return bool(self.criteria)

    @property
    def fatal_or_life_threatening(self) -> bool:
        return self.death or self.life_threatening


class MeddraCoding(_Frozen):
    """Codes a sponsor supplies; no MedDRA data ships with Tailor."""

    version: str = Field(pattern=r"^\d{1,2}\.[01]$", description="e.g. 27.0")
    llt_code: str | None = Field(default=None, pattern=r"^\d{8}$")
    pt_code: str | None = Field(default=None, pattern=r"^\d{8}$")

    @model_validator(mode="after")
    def _some_code(self) -> MeddraCoding:
        if self.llt_code is None and self.pt_code is None:
            raise ValueError("give llt_code or pt_code with a MedDRA version")
        return self


class AdverseEvent(_Frozen):
    """One version of an adverse event report. Build it with `parse_adverse_event`."""

    participant: str = Field(min_length=1, max_length=100)
    onset_date: date
    awareness_time: AwareDatetime
    verbatim_term: str = Field(min_length=1, max_length=250)  # E2B E.i.1.1a limit
    severity: Severity
    grade: int | None = Field(default=None, ge=1, le=5)
    seriousness: Seriousness
    relatedness: Relatedness
    expected: bool | None = None  # clinician's override; None = derive from the protocol
    outcome: Outcome
    action_taken: ActionTaken
    reporter: str = Field(min_length=1, max_length=200)
    meddra: MeddraCoding | None = None
    narrative: str | None = Field(default=None, max_length=20000)

    @field_validator("awareness_time")
    @classmethod
    def _to_utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)


def parse_adverse_event(data: Mapping[str, Any], *, now: datetime) -> AdverseEvent:
    """Validate raw input (API body or mapped REDCap form) into an `AdverseEvent`.

    Raises `InvalidAdverseEvent` listing every missing, malformed or contradictory field.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not isinstance(data, Mapping):
        raise InvalidAdverseEvent([FieldProblem("(body)", "expected an object of fields")])
    try:
        event = AdverseEvent.model_validate(dict(data))
    except ValidationError as err:
        problems = problems_from(err)
        values = _salvage(data, {p.field.split(".")[0] for p in problems})
        raise InvalidAdverseEvent(problems + consistency_problems(values, now)) from None
    problems = consistency_problems(dict(event), now)
    if problems:
        raise InvalidAdverseEvent(problems)
    return event


def problems_from(err: ValidationError) -> list[FieldProblem]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(body)"
        msg = {"missing": "required", "extra_forbidden": "unknown field"}.get(
            e["type"], e["msg"])
        out.append(FieldProblem(loc, msg))
    return out


def _salvage(data: Mapping[str, Any], bad: set[str]) -> dict[str, Any]:
    """The fields that do validate on their own, so cross-field rules can still run."""
    values: dict[str, Any] = {}
    for name, info in AdverseEvent.model_fields.items():
        if name in bad or name not in data or info.annotation is None:
            continue
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(info.annotation)
            values[name] = adapter.validate_python(data[name])
        except ValidationError:
            continue
    if isinstance(values.get("awareness_time"), datetime):
        values["awareness_time"] = values["awareness_time"].astimezone(UTC)
    return values


def _latest_date(instant: datetime) -> date:
    return (instant.astimezone(UTC) + _EARTH_LATEST_OFFSET).date()


def _onset_vs_awareness(v: Mapping[str, Any], now: datetime) -> list[FieldProblem]:
    onset, aware = v.get("onset_date"), v.get("awareness_time")
    if isinstance(onset, date) and isinstance(aware, datetime) and aware.tzinfo:
        if onset > _latest_date(aware):
            return [FieldProblem("onset_date", f"onset {onset} is after awareness {aware:%Y-%m-%d}")]
    return []


def _not_in_future(v: Mapping[str, Any], now: datetime) -> list[FieldProblem]:
    out = []
    aware, onset = v.get("awareness_time"), v.get("onset_date")
    if isinstance(aware, datetime) and aware.tzinfo and aware > now:
        out.append(FieldProblem("awareness_time", f"{aware.isoformat()} is in the future"))
    if isinstance(onset, date) and onset > _latest_date(now):
        out.append(FieldProblem("onset_date", f"{onset} is in the future"))
    return out


def _death_vs_outcome(v: Mapping[str, Any], now: datetime) -> list[FieldProblem]:
    ser, outcome = v.get("seriousness"), v.get("outcome")
    if not isinstance(ser, Seriousness) or outcome is None:
        return []
    fatal = outcome == Outcome.FATAL
    if ser.death and not fatal:
        return [FieldProblem("outcome", "death is reported, so the outcome must be 'fatal'")]
    if fatal and not ser.death:
        return [FieldProblem("seriousness.death", "outcome is 'fatal', so death must be true")]
    return []


_GRADE_SEVERITY = {1: Severity.MILD, 2: Severity.MODERATE, 3: Severity.SEVERE,
                   4: Severity.SEVERE, 5: Severity.SEVERE}


def _grade_consistent(v: Mapping[str, Any], now: datetime) -> list[FieldProblem]:
    grade = v.get("grade")
    if grade is None:
        return []
    out = []
    sev = v.get("severity")
    if sev is not None and _GRADE_SEVERITY[grade] != sev:
        out.append(FieldProblem(
            "grade", f"grade {grade} means {_GRADE_SEVERITY[grade].value}, not {sev}"))
    ser = v.get("seriousness")
    if isinstance(ser, Seriousness) and (grade == 5) != ser.death:
        out.append(FieldProblem(
            "grade", "grade 5 (death) if and only if death is reported"))
    return out


_RULES: tuple[Callable[[Mapping[str, Any], datetime], list[FieldProblem]], ...] = (
    _onset_vs_awareness, _not_in_future, _death_vs_outcome, _grade_consistent)


def consistency_problems(values: Mapping[str, Any], now: datetime) -> list[FieldProblem]:
    """Cross-field rules over whatever fields are present (see the module docstring)."""
    return [p for rule in _RULES for p in rule(values, now)]


# --- regulatory assessment -------------------------------------------------------------

def _normal(term: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", term.casefold()).split())


def is_expected(event: AdverseEvent, expected_events: list[str]) -> bool:
    """The clinician's override if given, else whether the verbatim term is on the
    protocol's list (case, punctuation and spacing ignored)."""
    if event.expected is not None:
        return event.expected
    return _normal(event.verbatim_term) in {_normal(t) for t in expected_events}


def is_related(event: AdverseEvent, related_levels: list[str]) -> bool:
    return event.relatedness.value in related_levels


@dataclass(frozen=True)
class Assessment:
    """What the reporting rules look at."""

    serious: bool
    related: bool
    unexpected: bool
    fatal_or_life_threatening: bool

    @property
    def susar(self) -> bool:
        return self.serious and self.related and self.unexpected

    def matches(self, when: ClockCondition) -> bool:
        return all(want is None or getattr(self, name) == want
                   for name, want in when.model_dump().items())


def assess(event: AdverseEvent, rules: SafetyRules) -> Assessment:
    return Assessment(
        serious=event.seriousness.serious,
        related=is_related(event, list(rules.related_levels)),
        unexpected=not is_expected(event, rules.expected_events),
        fatal_or_life_threatening=event.seriousness.fatal_or_life_threatening,
    )
