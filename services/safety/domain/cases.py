"""A case is the versioned history of one adverse event.

Version 1 is the initial report; every follow-up is a new version with a reason, and
earlier versions are never changed. `received_at` of a version is when its information
became known to the site: the start of any reporting clock that version starts.

Significant new information (what may restart a reporting clock, see `clocks.py`),
comparing a follow-up with the version before it:

- `serious`: the event became serious (no criterion before, one now);
- `criterion:<name>`: a seriousness criterion became true (death, life_threatening, …);
- `related`: relatedness moved into the protocol's `related_levels`;
- `unexpected`: the event was expected and is no longer (term or clinician's override);
- `fatal`: the outcome became fatal.

Downgrades, corrections of dates or wording, and severity changes are recorded and
audited like every change, but are not significant: seriousness, not severity, drives
the clocks, and a deadline is never withdrawn.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.core.protocol.safety import SafetyRules

from .errors import InvalidFollowUp
from .events import AdverseEvent, assess
from .vocabulary import SERIOUSNESS_CRITERIA, Outcome

INITIAL_REASON = "initial report"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseVersion(_Record):
    number: int = Field(ge=1)
    event: AdverseEvent
    reason: str = Field(min_length=1)
    received_at: AwareDatetime
    recorded_by: str = Field(min_length=1)


class Case(_Record):
    case_id: str = Field(min_length=1)
    versions: tuple[CaseVersion, ...] = Field(min_length=1)

    @property
    def latest(self) -> CaseVersion:
        return self.versions[-1]

    @property
    def participant(self) -> str:
        return self.versions[0].event.participant

    def version(self, number: int) -> CaseVersion:
        if not 1 <= number <= len(self.versions):
            raise InvalidFollowUp("version", f"case {self.case_id} has no version {number}")
        return self.versions[number - 1]


class FieldChange(_Record):
    field: str  # dotted path, e.g. "seriousness.hospitalisation"
    before: Any
    after: Any


def redcap_case_id(record: str, repeat_instance: int) -> str:
    """One case per REDCap `adverse_event` instance: a redelivered form finds its case."""
    return f"ae-{record}-{repeat_instance}"


def open_case(case_id: str, event: AdverseEvent, *, recorded_by: str) -> Case:
    version = CaseVersion(number=1, event=event, reason=INITIAL_REASON,
                          received_at=event.awareness_time, recorded_by=recorded_by)
    return Case(case_id=case_id, versions=(version,))


def follow_up(case: Case, event: AdverseEvent, *, reason: str, received_at: datetime,
              recorded_by: str) -> Case:
    """A new case with the follow-up appended; `case` itself is unchanged.

    Raises `InvalidFollowUp` if the reason is blank, the participant differs, the
    information predates the latest version, or nothing changed (a redelivered form).
    """
    latest = case.latest
    if not reason.strip():
        raise InvalidFollowUp("reason", "a follow-up needs a reason")
    if event.participant != case.participant:
        raise InvalidFollowUp(
            "participant", f"case {case.case_id} belongs to {case.participant}")
    if received_at.tzinfo is None:
        raise InvalidFollowUp("received_at", "must be timezone-aware")
    if received_at < latest.received_at:
        raise InvalidFollowUp(
            "received_at", f"earlier than version {latest.number} ({latest.received_at})")
    if event == latest.event:
        raise InvalidFollowUp("(event)", f"identical to version {latest.number}")
    version = CaseVersion(number=latest.number + 1, event=event, reason=reason.strip(),
                          received_at=received_at, recorded_by=recorded_by)
    return case.model_copy(update={"versions": (*case.versions, version)})


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def diff(before: AdverseEvent, after: AdverseEvent) -> list[FieldChange]:
    """Every field whose value changed, as JSON values (for the audit chain)."""
    old = _flatten(before.model_dump(mode="json"))
    new = _flatten(after.model_dump(mode="json"))
    return [FieldChange(field=k, before=old.get(k), after=new.get(k))
            for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]


def significant_changes(before: AdverseEvent | None, after: AdverseEvent,
                        rules: SafetyRules) -> list[str]:
    """What makes `after` significant new information (empty: not significant)."""
    if before is None:
        return []
    old, new = assess(before, rules), assess(after, rules)
    found = []
    if new.serious and not old.serious:
        found.append("serious")
    found += [f"criterion:{c}" for c in SERIOUSNESS_CRITERIA
              if getattr(after.seriousness, c) and not getattr(before.seriousness, c)]
    if new.related and not old.related:
        found.append("related")
    if new.unexpected and not old.unexpected:
        found.append("unexpected")
    if after.outcome == Outcome.FATAL and before.outcome != Outcome.FATAL:
        found.append("fatal")
    return found


def audit_entry(case: Case, number: int, rules: SafetyRules) -> dict[str, Any]:
    """JSON-ready description of version `number` for the audit chain."""
    v = case.version(number)
    before = case.version(number - 1).event if number > 1 else None
    return {
        "case_id": case.case_id,
        "version": number,
        "reason": v.reason,
        "received_at": v.received_at.isoformat(),
        "recorded_by": v.recorded_by,
        "changes": [] if before is None
        else [c.model_dump(mode="json") for c in diff(before, v.event)],
        "significant": significant_changes(before, v.event, rules),
    }
