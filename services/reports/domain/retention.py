"""Retention and completion per timepoint, reasons for loss with their preventable class,
and reminders needed per completed assessment.

`due` counts every assessment that should have happened or can no longer happen:
complete + open + overdue + lost. Completion rate = complete / due with its Wilson CI.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from services.core.protocol import Timepoint

from .stats import wilson
from .status import Status, TimepointState


@dataclass(frozen=True)
class TimepointRetention:
    timepoint: str
    label: str
    not_yet_due: int
    open: int
    complete: int
    overdue: int
    lost: int
    due: int
    completion_rate: float | None
    ci_low: float | None
    ci_high: float | None
    reminders_per_completed: float | None


@dataclass(frozen=True)
class LossReason:
    stage: str  # before_randomization | lost_to_follow_up | discontinued
    reason: str
    preventable: str  # yes | no | unknown
    participants: int


@dataclass(frozen=True)
class Retention:
    as_of: date
    randomized: int
    timepoints: list[TimepointRetention]
    reasons: list[LossReason]
    preventable: dict[str, int]  # yes / no / unknown over every withdrawal


def _preventable(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def retention(cohort: Sequence[Status], timepoints: Sequence[Timepoint], *, as_of: date,
              lost_reasons: Iterable[str]) -> Retention:
    randomized = [s for s in cohort if s.randomized]
    rows = []
    for t in timepoints:
        if t.anchor == "consent":
            continue
        states = Counter(s.states[t.key] for s in randomized if t.key in s.states)
        due = sum(states[k] for k in (TimepointState.COMPLETE, TimepointState.OPEN,
                                      TimepointState.OVERDUE, TimepointState.LOST))
        done = states[TimepointState.COMPLETE]
        low, high = wilson(done, due) if due else (None, None)
        reminders = [s.reminders[t.key] for s in randomized if t.key in s.reminders]
        rows.append(TimepointRetention(
            timepoint=t.key, label=t.label, not_yet_due=states[TimepointState.NOT_YET_DUE],
            open=states[TimepointState.OPEN], complete=done,
            overdue=states[TimepointState.OVERDUE], lost=states[TimepointState.LOST], due=due,
            completion_rate=done / due if due else None, ci_low=low, ci_high=high,
            reminders_per_completed=sum(reminders) / len(reminders) if reminders else None))
    ltfu = set(lost_reasons)
    reasons: Counter[tuple[str, str, str]] = Counter()
    for s in cohort:
        if not s.withdrawn:
            continue
        stage = ("before_randomization" if not s.randomized
                 else "lost_to_follow_up" if s.reason in ltfu else "discontinued")
        reasons[(stage, s.reason, _preventable(s.facts.preventable))] += 1
    classes = Counter({"yes": 0, "no": 0, "unknown": 0})
    for (_stage, _reason, prev), n in reasons.items():
        classes[prev] += n
    return Retention(
        as_of=as_of, randomized=len(randomized), timepoints=rows,
        reasons=[LossReason(st, r, p, n) for (st, r, p), n in sorted(reasons.items())],
        preventable=dict(classes))
