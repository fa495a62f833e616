"""Reporting obligations and their clocks, entirely from the protocol's rules.

- A rule applies to a case version when its assessment (serious, related, unexpected,
  fatal_or_life_threatening) matches every criterion the rule's `when` gives.
- The first version a rule applies to creates one obligation; its clock starts at that
  version's `received_at` (the awareness time for version 1) and ends `deadline_hours`
  later. So a non-serious event that becomes serious on follow-up starts its clocks then.
- Later versions: if the rule says `restart_on_follow_up` and the version carries
  significant new information (`cases.significant_changes`), a fresh *follow-up*
  obligation starts at that version's `received_at`. Earlier obligations keep their
  deadlines: a restart never gives more time for a report already owed.
- Escalation falls due at `escalate_at_fraction` of the clock if nobody acknowledged it.
- Status at `now`: sent (report sent: met) > overdue (now past the deadline, not sent)
  > acknowledged (a safety officer took charge) > open. The deadline instant itself is
  still in time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.core.protocol.safety import ReportingRule, SafetyRules

from .cases import Case, CaseVersion, significant_changes
from .errors import ObligationStateError
from .events import assess
from .vocabulary import ObligationStatus


class Obligation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str  # "<case_id>/<rule_key>/v<version>": stable, so re-planning is idempotent
    case_id: str
    participant: str
    rule_key: str
    recipients: tuple[str, ...]
    version: int = Field(ge=1)  # the case version whose information started the clock
    follow_up: bool  # a restart for significant new information
    started_at: AwareDatetime
    deadline_at: AwareDatetime
    escalate_at: AwareDatetime
    acknowledged_at: AwareDatetime | None = None
    acknowledged_by: str | None = None
    sent_at: AwareDatetime | None = None
    sent_by: str | None = None
    escalated_at: AwareDatetime | None = None


def _obligation(case: Case, v: CaseVersion, rule: ReportingRule, fraction: float,
                follow_up: bool) -> Obligation:
    clock = timedelta(hours=rule.deadline_hours)
    return Obligation(
        key=f"{case.case_id}/{rule.key}/v{v.number}", case_id=case.case_id,
        participant=case.participant, rule_key=rule.key, recipients=tuple(rule.recipients),
        version=v.number, follow_up=follow_up, started_at=v.received_at,
        deadline_at=v.received_at + clock, escalate_at=v.received_at + clock * fraction)


def plan_obligations(case: Case, rules: SafetyRules,
                     existing: Iterable[Obligation]) -> list[Obligation]:
    """The obligations the case's latest version creates, given those that exist.

    Call it after every new version; calling it twice for the same version returns
    nothing the second time.
    """
    latest = case.latest
    previous = case.versions[-2].event if len(case.versions) > 1 else None
    assessment = assess(latest.event, rules)
    significant = bool(significant_changes(previous, latest.event, rules))
    mine = [o for o in existing if o.case_id == case.case_id]
    new = []
    for rule in rules.rules:
        if not assessment.matches(rule.when):
            continue
        earlier = [o for o in mine if o.rule_key == rule.key]
        if any(o.version == latest.number for o in earlier):
            continue
        if not earlier:
            new.append(_obligation(case, latest, rule, rules.escalate_at_fraction, False))
        elif rule.restart_on_follow_up and significant:
            new.append(_obligation(case, latest, rule, rules.escalate_at_fraction, True))
    return new


def status(o: Obligation, now: datetime) -> ObligationStatus:
    if o.sent_at is not None:
        return ObligationStatus.SENT
    if now > o.deadline_at:
        return ObligationStatus.OVERDUE
    if o.acknowledged_at is not None:
        return ObligationStatus.ACKNOWLEDGED
    return ObligationStatus.OPEN


def sent_late(o: Obligation) -> bool:
    return o.sent_at is not None and o.sent_at > o.deadline_at


def _check_actor(o: Obligation, field: str, by: str, at: datetime) -> None:
    if not by.strip():
        raise ObligationStateError(f"{field}_by", "who did it is required")
    if at.tzinfo is None:
        raise ObligationStateError(f"{field}_at", "must be timezone-aware")
    if at < o.started_at:
        raise ObligationStateError(
            f"{field}_at", f"{at.isoformat()} is before the clock started ({o.started_at})")


def acknowledge(o: Obligation, *, by: str, at: datetime) -> Obligation:
    """A safety officer takes charge: stops escalation, not the clock."""
    _check_actor(o, "acknowledged", by, at)
    if o.sent_at is not None:
        raise ObligationStateError("acknowledged_at", f"{o.key} was already sent")
    if o.acknowledged_at is not None:
        raise ObligationStateError(
            "acknowledged_at", f"{o.key} was acknowledged by {o.acknowledged_by} already")
    return o.model_copy(update={"acknowledged_at": at, "acknowledged_by": by.strip()})


def mark_sent(o: Obligation, *, by: str, at: datetime) -> Obligation:
    """The report went to the recipients: the obligation is met (late if after deadline)."""
    _check_actor(o, "sent", by, at)
    if o.sent_at is not None:
        raise ObligationStateError("sent_at", f"{o.key} was sent by {o.sent_by} already")
    return o.model_copy(update={"sent_at": at, "sent_by": by.strip()})


def due_for_escalation(obligations: Iterable[Obligation], now: datetime) -> list[Obligation]:
    """Unsent, unacknowledged, not yet escalated, and past their escalation time."""
    return [o for o in obligations
            if o.sent_at is None and o.acknowledged_at is None and o.escalated_at is None
            and now >= o.escalate_at]


def mark_escalated(o: Obligation, *, at: datetime) -> Obligation:
    if o.escalated_at is not None:
        raise ObligationStateError("escalated_at", f"{o.key} was escalated already")
    return o.model_copy(update={"escalated_at": at})


def earliest_open_deadline(obligations: Sequence[Obligation]) -> datetime | None:
    """Deadline of the most urgent unsent obligation: `time() > value` means overdue."""
    return min((o.deadline_at for o in obligations if o.sent_at is None), default=None)
