"""Diary adherence of the diary module: prompts answered in time of prompts sent, overall
and per ISO week (of each participant's own calendar), from the counts notifications
publishes. Only diary participants get prompts, so only they are counted.

A week counts from its Monday on (`as_of`); its figures are the latest known, so a past
`as_of` inside a week still sees that week's later prompts. Prompts still open when counted
are in `prompts_sent` and not yet answered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

from .facts import DiaryWeek


@dataclass(frozen=True)
class DiaryWeekFigures:
    week: str
    week_start: date
    participants: int
    prompts_sent: int
    answered_in_time: int
    adherence: float | None


@dataclass(frozen=True)
class DiaryAdherence:
    participants: int
    prompts_sent: int
    answered_in_time: int
    adherence: float | None  # None: nothing sent yet, or answers are not recorded
    weeks: list[DiaryWeekFigures]


def _rate(answered: int, sent: int, answers_recorded: bool) -> float | None:
    return answered / sent if sent and answers_recorded else None


def diary_adherence(weeks: Sequence[DiaryWeek], members: Collection[str], *, as_of: date,
                    answers_recorded: bool = True) -> DiaryAdherence:
    """Adherence of `members` (the group's randomized participants) over the weeks begun
    by `as_of`. `answers_recorded`: the protocol reports diary answers back (else the
    answered counts are not a measure and every adherence is None)."""
    mine = [w for w in weeks if w.record in members and w.week_start <= as_of]
    by_week: dict[tuple[date, str], list[DiaryWeek]] = defaultdict(list)
    for w in mine:
        by_week[(w.week_start, w.week)].append(w)
    figures = []
    for (start, week), rows in sorted(by_week.items()):
        sent, answered = sum(r.prompts_sent for r in rows), sum(r.answered_in_time for r in rows)
        figures.append(DiaryWeekFigures(week, start, len({r.record for r in rows}), sent,
                                        answered, _rate(answered, sent, answers_recorded)))
    sent, answered = sum(w.prompts_sent for w in mine), sum(w.answered_in_time for w in mine)
    return DiaryAdherence(len({w.record for w in mine}), sent, answered,
                          _rate(answered, sent, answers_recorded), figures)
