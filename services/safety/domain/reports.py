"""Safety reports: pure aggregation over the cases, allocations and obligations given.

Every case counts once, as its latest version. An event counts for a participant's
module (and arm) when the participant is allocated and the onset is on or after the
allocation date; all other events (before allocation, never allocated) are counted
apart in `before_allocation`, without a rate.

Time at risk runs from allocation to the end of follow-up (`ended_at`) or `now`,
whichever is first. Rates are events per participant-year (365.25 days).

The unblinded report takes the arm map from its caller (the randomization service's
unblinded answer at report time) and keeps it nowhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.core.protocol.safety import SafetyRules

from .cases import Case
from .clocks import Obligation, sent_late, status
from .errors import IncompleteArmMap
from .events import assess, is_expected
from .vocabulary import SERIOUSNESS_CRITERIA, ObligationStatus, Relatedness, Severity

DAYS_PER_YEAR = 365.25


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Allocation(_Report):
    participant: str
    module: str
    allocated_at: AwareDatetime
    ended_at: AwareDatetime | None = None  # withdrawal or end of follow-up


class EventCounts(_Report):
    events: int
    participants_with_event: int
    serious: int
    related: int
    by_severity: dict[str, int]
    by_relatedness: dict[str, int]
    by_seriousness_criterion: dict[str, int]


class GroupSummary(_Report):
    participants: int
    participant_days: float
    counts: EventCounts
    events_per_participant_year: float | None
    serious_per_participant_year: float | None


class ObligationLine(_Report):
    key: str
    case_id: str
    rule_key: str
    status: ObligationStatus
    deadline_at: AwareDatetime


class ObligationSummary(_Report):
    by_status: dict[str, int]
    sent_late: int
    unsent: list[ObligationLine]  # open, acknowledged and overdue, soonest deadline first


class BlindedReport(_Report):
    generated_at: AwareDatetime
    overall: GroupSummary
    by_module: dict[str, GroupSummary]
    before_allocation: EventCounts
    obligations: ObligationSummary


class SaeLine(_Report):
    case_id: str
    participant: str
    arm: str | None  # None: never allocated
    module: str | None
    verbatim_term: str
    onset_date: date
    awareness_time: AwareDatetime
    criteria: tuple[str, ...]
    severity: Severity
    relatedness: Relatedness
    expected: bool
    outcome: str
    versions: int


class UnblindedReport(_Report):
    blinded: BlindedReport
    by_arm: dict[str, GroupSummary]
    by_arm_and_module: dict[str, dict[str, GroupSummary]]
    sae_listing: list[SaeLine]


def _counts(cases: Sequence[Case], rules: SafetyRules) -> EventCounts:
    events = [c.latest.event for c in cases]
    return EventCounts(
        events=len(events),
        participants_with_event=len({e.participant for e in events}),
        serious=sum(e.seriousness.serious for e in events),
        related=sum(assess(e, rules).related for e in events),
        by_severity={s.value: sum(e.severity == s for e in events) for s in Severity},
        by_relatedness={r.value: sum(e.relatedness == r for e in events) for r in Relatedness},
        by_seriousness_criterion={
            c: sum(getattr(e.seriousness, c) for e in events) for c in SERIOUSNESS_CRITERIA},
    )


def _days_at_risk(a: Allocation, now: datetime) -> float:
    end = min(a.ended_at or now, now)
    return max(0.0, (end - a.allocated_at).total_seconds() / 86400)


def _rate(n: int, days: float) -> float | None:
    return n / (days / DAYS_PER_YEAR) if days > 0 else None


def _summary(cases: Sequence[Case], allocs: Sequence[Allocation], rules: SafetyRules,
             now: datetime) -> GroupSummary:
    counts = _counts(cases, rules)
    days = sum(_days_at_risk(a, now) for a in allocs)
    return GroupSummary(
        participants=len(allocs), participant_days=days, counts=counts,
        events_per_participant_year=_rate(counts.events, days),
        serious_per_participant_year=_rate(counts.serious, days))


def _split(cases: Iterable[Case], by_participant: Mapping[str, Allocation]
           ) -> tuple[list[Case], list[Case]]:
    after: list[Case] = []
    before: list[Case] = []
    for c in cases:
        a = by_participant.get(c.participant)
        on_treatment = a is not None and c.latest.event.onset_date >= a.allocated_at.date()
        (after if on_treatment else before).append(c)
    return after, before


def _obligations(obligations: Iterable[Obligation], now: datetime) -> ObligationSummary:
    obs = list(obligations)
    tally = Counter(status(o, now).value for o in obs)
    unsent = sorted((o for o in obs if o.sent_at is None), key=lambda o: o.deadline_at)
    return ObligationSummary(
        by_status={s.value: tally.get(s.value, 0) for s in ObligationStatus},
        sent_late=sum(sent_late(o) for o in obs),
        unsent=[ObligationLine(key=o.key, case_id=o.case_id, rule_key=o.rule_key,
                               status=status(o, now), deadline_at=o.deadline_at)
                for o in unsent])


def blinded_report(cases: Sequence[Case], allocations: Sequence[Allocation],
                   obligations: Sequence[Obligation], *, rules: SafetyRules,
                   modules: Sequence[str], now: datetime) -> BlindedReport:
    """Counts, rates and obligations by module; no arm anywhere."""
    by_participant = {a.participant: a for a in allocations}
    after, before = _split(cases, by_participant)
    by_module = {
        m: _summary([c for c in after if by_participant[c.participant].module == m],
                    [a for a in allocations if a.module == m], rules, now)
        for m in modules}
    return BlindedReport(
        generated_at=now, overall=_summary(after, allocations, rules, now),
        by_module=by_module, before_allocation=_counts(before, rules),
        obligations=_obligations(obligations, now))


def _sae_line(c: Case, a: Allocation | None, arm: str | None, rules: SafetyRules) -> SaeLine:
    e = c.latest.event
    return SaeLine(
        case_id=c.case_id, participant=c.participant, arm=arm, module=a.module if a else None,
        verbatim_term=e.verbatim_term, onset_date=e.onset_date,
        awareness_time=e.awareness_time, criteria=e.seriousness.criteria,
        severity=e.severity, relatedness=e.relatedness,
        expected=is_expected(e, rules.expected_events), outcome=e.outcome.value,
        versions=len(c.versions))


def unblinded_report(cases: Sequence[Case], allocations: Sequence[Allocation],
                     obligations: Sequence[Obligation], *, rules: SafetyRules,
                     modules: Sequence[str], arms: Sequence[str], arm_of: Mapping[str, str],
                     now: datetime) -> UnblindedReport:
    """The blinded report plus the same figures by arm and an SAE listing (DSMB only)."""
    missing = sorted(a.participant for a in allocations if arm_of.get(a.participant) not in arms)
    if missing:
        raise IncompleteArmMap("arm_of", f"no known arm for allocated participants {missing}")
    by_participant = {a.participant: a for a in allocations}
    after, _ = _split(cases, by_participant)

    def group(arm: str, module: str | None) -> GroupSummary:
        def keep(p: str) -> bool:
            return arm_of[p] == arm and module in (None, by_participant[p].module)
        return _summary([c for c in after if keep(c.participant)],
                        [a for a in allocations if keep(a.participant)], rules, now)

    def arm(c: Case) -> str | None:
        return arm_of[c.participant] if c.participant in by_participant else None

    saes = sorted((c for c in cases if c.latest.event.seriousness.serious),
                  key=lambda c: (arm(c) or "", c.latest.event.onset_date, c.case_id))
    return UnblindedReport(
        blinded=blinded_report(cases, allocations, obligations, rules=rules,
                               modules=modules, now=now),
        by_arm={arm: group(arm, None) for arm in arms},
        by_arm_and_module={arm: {m: group(arm, m) for m in modules} for arm in arms},
        sae_listing=[_sae_line(c, by_participant.get(c.participant), arm(c), rules)
                     for c in saes])
