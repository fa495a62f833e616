"""From REDCap exports (strings, blank = "") to domain inputs.

REDCap `datetime_ymd` values are site-local wall-clock times without a zone; the
caller passes the site's IANA zone and gets a UTC awareness time back. Problems are
named by REDCap field name, which is what the data manager sees.

Serious gate: `ae_serious` (yes/no) must agree with the six criteria. With "yes",
every criterion must be answered and at least one must be yes; with "no", blank
criteria count as no and any criterion answered yes is a contradiction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from services.core.protocol.safety import AeForm, AeFormFields, InepDesign

from .errors import FieldProblem, InvalidAdverseEvent, InvalidQuestionnaire
from .events import AdverseEvent, parse_adverse_event
from .screening import Attribution, InepAnswer, NeqAnswer
from .vocabulary import SERIOUSNESS_CRITERIA

_DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class RedcapAdverseEvent:
    event: AdverseEvent
    follow_up_reason: str | None  # ae_followup_reason; needed when the instance is re-saved


class _Reader:
    """Reads one record's fields, collecting problems instead of stopping at the first."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = record
        self.problems: list[FieldProblem] = []

    def text(self, name: str) -> str | None:
        value = self.record.get(name)
        value = "" if value is None else str(value).strip()
        return value or None

    def coded(self, name: str, codes: Mapping[str, Any]) -> Any:
        raw = self.text(name)
        if raw is None:
            return None
        if raw not in codes:
            self.problems.append(FieldProblem(name, f"unknown code {raw!r} (known: {list(codes)})"))
            return None
        return codes[raw]

    def integer(self, name: str) -> int | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            self.problems.append(FieldProblem(name, f"{raw!r} is not a whole number"))
            return None

    def local_datetime(self, name: str, zone: ZoneInfo) -> datetime | None:
        raw = self.text(name)
        if raw is None:
            return None
        for fmt in _DATETIME_FORMATS:
            try:
                return datetime.strptime(raw, fmt).replace(tzinfo=zone)
            except ValueError:
                continue
        self.problems.append(FieldProblem(name, f"{raw!r} is not 'YYYY-MM-DD HH:MM'"))
        return None

    def local_date(self, name: str) -> date | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.problems.append(FieldProblem(name, f"{raw!r} is not 'YYYY-MM-DD'"))
            return None


def _seriousness(r: _Reader, f: AeFormFields, yes_no: Mapping[str, bool]) -> dict[str, bool]:
    gate = r.coded(f.serious, yes_no)
    answers = {c: r.coded(getattr(f, c), yes_no) for c in SERIOUSNESS_CRITERIA}
    if gate is None and r.text(f.serious) is None:
        r.problems.append(FieldProblem(f.serious, "required"))
    if gate is True:
        for c, v in answers.items():
            if v is None and r.text(getattr(f, c)) is None:
                r.problems.append(FieldProblem(getattr(f, c), f"required when {f.serious} is yes"))
        if all(v is False for v in answers.values()):
            r.problems.append(FieldProblem(f.serious, "yes, but no seriousness criterion is yes"))
    if gate is False:
        for c, v in answers.items():
            if v is True:
                r.problems.append(FieldProblem(getattr(f, c), f"yes, but {f.serious} is no"))
    return {c: bool(v) for c, v in answers.items()}


def _redcap_name(path: str, f: AeFormFields) -> str:
    head, _, tail = path.partition(".")
    if head == "seriousness" and tail:
        return getattr(f, tail, path)
    if head == "meddra":
        return {"version": f.meddra_version, "pt_code": f.meddra_pt}.get(tail, f.meddra_llt)
    return getattr(f, head, path) if head != "participant" else path


def adverse_event_from_redcap(record: Mapping[str, Any], *, participant: str, form: AeForm,
                              timezone: str, now: datetime) -> RedcapAdverseEvent:
    """Map one `adverse_event` instance to a validated `AdverseEvent`.

    Raises `InvalidAdverseEvent` whose problems name REDCap fields.
    """
    f, c = form.fields, form.codes
    r = _Reader(record)
    meddra = {"version": r.text(f.meddra_version), "llt_code": r.text(f.meddra_llt),
              "pt_code": r.text(f.meddra_pt)}
    data = {
        "participant": participant,
        "onset_date": r.local_date(f.onset_date),
        "awareness_time": r.local_datetime(f.awareness_time, ZoneInfo(timezone)),
        "verbatim_term": r.text(f.verbatim_term),
        "severity": r.coded(f.severity, c.severity),
        "grade": r.integer(f.grade),
        "seriousness": _seriousness(r, f, c.yes_no),
        "relatedness": r.coded(f.relatedness, c.relatedness),
        "expected": r.coded(f.expected, c.yes_no),
        "outcome": r.coded(f.outcome, c.outcome),
        "action_taken": r.coded(f.action_taken, c.action_taken),
        "reporter": r.text(f.reporter),
        "meddra": meddra if any(meddra.values()) else None,
        "narrative": r.text(f.narrative),
    }
    # A field REDCap could not even read is reported once, by its reader.
    unreadable = {p.field for p in r.problems}
    data = {k: v for k, v in data.items()
            if v is not None or k in ("grade", "expected", "meddra", "narrative")}
    problems = list(r.problems)
    try:
        event = parse_adverse_event(data, now=now)
    except InvalidAdverseEvent as err:
        for p in err.problems:
            name = _redcap_name(p.field, f)
            if name not in unreadable:
                problems.append(FieldProblem(name, p.message))
        raise InvalidAdverseEvent(problems) from None
    if problems:
        raise InvalidAdverseEvent(problems)
    return RedcapAdverseEvent(event, r.text(f.follow_up_reason))


def neq_from_redcap(record: Mapping[str, Any], *, form: AeForm,
                    n_items: int) -> dict[int, NeqAnswer]:
    """NEQ answers by item number; unanswered items are left out."""
    r, p, c = _Reader(record), form.neq_prefix, form.codes
    answers: dict[int, NeqAnswer] = {}
    for n in range(1, n_items + 1):
        occurred = r.coded(f"{p}{n}", c.yes_no)
        impact = r.integer(f"{p}{n}_impact")
        attribution = r.coded(f"{p}{n}_attr", c.attribution)
        if occurred is not None:
            answers[n] = NeqAnswer(occurred, impact,
                                   Attribution(attribution) if attribution else None)
    if r.problems:
        raise InvalidQuestionnaire("NEQ", r.problems)
    return answers


def inep_from_redcap(record: Mapping[str, Any], *, form: AeForm,
                     design: InepDesign) -> dict[int, InepAnswer]:
    """INEP answers by item number; bipolar codes 0..6 become −3..+3."""
    r, p, c = _Reader(record), form.inep_prefix, form.codes
    bipolar = set(design.bipolar_items)
    answers: dict[int, InepAnswer] = {}
    for n in range(1, design.items + 1):
        code = r.integer(f"{p}{n}")
        attribution = r.coded(f"{p}{n}_attr", c.attribution)
        if code is not None:
            value = code - design.bipolar_code_offset if n in bipolar else code
            answers[n] = InepAnswer(value, Attribution(attribution) if attribution else None)
    if r.problems:
        raise InvalidQuestionnaire("INEP", r.problems)
    return answers
