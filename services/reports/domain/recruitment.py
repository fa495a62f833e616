"""Recruitment progress: randomized per week and site, cumulative against the target, and
when the target will be reached at the overall and at the recent rate.

`readjust_start_by` is the planned end minus the protocol's lead time: the last day a
changed strategy can start and still take effect. `readjust_needed` says whether the
recent rate misses the planned end.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from services.core.protocol import RecruitmentPlan

from .status import Status


@dataclass(frozen=True)
class WeekCount:
    week_start: date  # Monday
    randomized: int
    cumulative: int


@dataclass(frozen=True)
class SiteWeek:
    site: str
    week_start: date
    randomized: int


@dataclass(frozen=True)
class Recruitment:
    as_of: date
    target: int
    randomized: int
    remaining: int
    started_on: date | None
    planned_end: date | None
    weeks: list[WeekCount]
    by_site: list[SiteWeek]
    rate_per_week: float | None
    recent_rate_per_week: float | None
    recent_weeks: int
    target_reached_on: date | None
    projected_completion_linear: date | None
    projected_completion_recent: date | None
    readjust_start_by: date | None
    readjust_needed: bool | None
    strategy_changed_on: date | None


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _projection(as_of: date, remaining: int, per_day: float) -> date | None:
    if remaining <= 0:
        return as_of
    if per_day <= 0:
        return None
    return as_of + timedelta(days=math.ceil(remaining / per_day))


def recruitment(cohort: Sequence[Status], plan: RecruitmentPlan, *, as_of: date) -> Recruitment:
    days = sorted(s.randomized_on for s in cohort if s.randomized_on is not None)
    assessed = [s.facts.assessed_on for s in cohort]
    start = plan.planned_start or (min(assessed) if assessed else None)
    planned_end = start + timedelta(weeks=plan.planned_weeks) if start else None
    per_week = Counter(monday(d) for d in days)
    weeks, total = [], 0
    if days:
        week = monday(min(start or days[0], days[0]))
        while week <= monday(as_of):
            total += per_week[week]
            weeks.append(WeekCount(week, per_week[week], total))
            week += timedelta(weeks=1)
    per_site = Counter((s.facts.site or "all", monday(s.randomized_on))
                       for s in cohort if s.randomized_on is not None)
    by_site = [SiteWeek(site, week, n) for (site, week), n in sorted(per_site.items())]
    n, remaining = len(days), max(0, plan.target - len(days))
    elapsed = (as_of - start).days + 1 if start else 0
    rate = n / elapsed if elapsed > 0 else None
    window = min(plan.recent_weeks * 7, elapsed) if elapsed > 0 else 0
    recent_n = sum(1 for d in days if (as_of - d).days < window)
    recent = recent_n / window if window else None
    reached = days[plan.target - 1] if n >= plan.target else None
    linear = _projection(as_of, remaining, rate) if rate is not None else None
    recent_end = _projection(as_of, remaining, recent) if recent is not None else None
    readjust_by = planned_end - timedelta(weeks=plan.readjust_lead_weeks) if planned_end else None
    needed = None
    if planned_end is not None and remaining > 0:
        needed = recent_end is None or recent_end > planned_end
    elif planned_end is not None:
        needed = False
    return Recruitment(
        as_of=as_of, target=plan.target, randomized=n, remaining=remaining, started_on=start,
        planned_end=planned_end, weeks=weeks, by_site=by_site,
        rate_per_week=rate * 7 if rate is not None else None,
        recent_rate_per_week=recent * 7 if recent is not None else None,
        recent_weeks=plan.recent_weeks, target_reached_on=reached,
        projected_completion_linear=reached or linear,
        projected_completion_recent=reached or recent_end, readjust_start_by=readjust_by,
        readjust_needed=needed, strategy_changed_on=plan.strategy_changed_on)
