"""Where each participant stands on a given date: the one derivation every figure uses.

A timepoint's target date is its anchor's target date plus `offset_days` (the planned
schedule, so a late T1 does not move T2). Its state on a date is exactly one of:
complete (done by then), lost (the participant withdrew or was lost before completing it
and before its window closed),
not yet due (its window has not opened), open (window open) or overdue (window closed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from services.core.protocol import Timepoint

from .facts import Facts, ParticipantFacts, TimepointDone


class TimepointState(StrEnum):
    NOT_YET_DUE = "not_yet_due"
    OPEN = "open"
    COMPLETE = "complete"
    OVERDUE = "overdue"
    LOST = "lost"


def target_dates(randomized_on: date, timepoints: Sequence[Timepoint]) -> dict[str, date]:
    """Planned target date of every follow-up timepoint (the baseline has none)."""
    out: dict[str, date] = {}
    for t in timepoints:
        base = randomized_on if t.anchor == "allocation" else out.get(t.anchor)
        if base is not None:
            out[t.key] = base + timedelta(days=t.offset_days)
    return out


def timepoint_state(target: date, window: tuple[int, int], *, done_on: date | None,
                    withdrawn_on: date | None, as_of: date) -> TimepointState:
    if done_on is not None and done_on <= as_of:
        return TimepointState.COMPLETE
    closes = target + timedelta(days=window[1])
    if withdrawn_on is not None and withdrawn_on <= as_of and withdrawn_on <= closes:
        return TimepointState.LOST  # gone before the window closed (after it: missed)
    if as_of < target + timedelta(days=window[0]):
        return TimepointState.NOT_YET_DUE
    if as_of <= closes:
        return TimepointState.OPEN
    return TimepointState.OVERDUE


@dataclass(frozen=True)
class Status:
    """One assessed participant on `as_of`."""

    facts: ParticipantFacts
    as_of: date
    eligible: bool | None
    consented: bool
    declined: bool
    baseline_complete: bool
    randomized_on: date | None
    withdrawn: bool
    received: bool = False  # started the allocated module by `as_of`
    targets: dict[str, date] = field(default_factory=dict)
    states: dict[str, TimepointState] = field(default_factory=dict)
    reminders: dict[str, int] = field(default_factory=dict)  # per completed timepoint

    @property
    def record(self) -> str:
        return self.facts.record

    @property
    def randomized(self) -> bool:
        return self.randomized_on is not None

    @property
    def reason(self) -> str:
        return self.facts.withdrawal_reason or "unspecified"


def _on(day: date | None, as_of: date) -> bool:
    return day is not None and day <= as_of


def status_of(p: ParticipantFacts, done: Iterable[TimepointDone],
              timepoints: Sequence[Timepoint], as_of: date) -> Status:
    randomized_on = p.randomized_at.date() if p.randomized_at and p.randomized_at.date() <= as_of \
        else None
    withdrawn_on = p.withdrawn_on if _on(p.withdrawn_on, as_of) else None
    consent_day = p.consented_on or p.assessed_on
    targets = target_dates(randomized_on, timepoints) if randomized_on else {}
    finished = {d.timepoint: d for d in done}
    states: dict[str, TimepointState] = {}
    for t in timepoints:
        if t.key not in targets:
            continue
        d = finished.get(t.key)
        states[t.key] = timepoint_state(
            targets[t.key], t.window_days, done_on=d.completed_at.date() if d else None,
            withdrawn_on=withdrawn_on, as_of=as_of)
    reminders = {k: finished[k].reminders_sent for k, s in states.items()
                 if s is TimepointState.COMPLETE}
    return Status(
        facts=p, as_of=as_of, eligible=p.eligible, consented=bool(p.consent) and consent_day <= as_of,
        declined=p.consent is False, baseline_complete=_on(p.baseline_complete_on, as_of),
        randomized_on=randomized_on, withdrawn=withdrawn_on is not None,
        received=_on(p.received_on, as_of), targets=targets,
        states=states, reminders=reminders)


def cohort_on(facts: Facts, timepoints: Sequence[Timepoint], as_of: date) -> list[Status]:
    """Every participant assessed by `as_of` (or randomized by then), in record order."""
    done: dict[str, list[TimepointDone]] = {}
    for d in facts.timepoints:
        done.setdefault(d.record, []).append(d)
    out = []
    for p in sorted(facts.participants, key=lambda p: p.record):
        assessed = p.assessed_on <= as_of or _on(p.randomized_at.date() if p.randomized_at else None,
                                                 as_of)
        if assessed:
            out.append(status_of(p, done.get(p.record, ()), timepoints, as_of))
    return out
