"""Feasibility criteria: value, Wilson CI and verdict, each as the protocol declares it.

Verdicts compare exact fractions (19/20 is exactly 0.95, never 0.9499999), inclusive at
the threshold. A proportion with an empty denominator has no value and no verdict yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from services.core.protocol import Criterion, Timepoint

from .flow import quantity
from .stats import wilson
from .status import Status


@dataclass(frozen=True)
class CriterionResult:
    key: str
    label: str
    measure: str
    numerator: int
    denominator: int
    value: float | None  # the count, or the proportion
    ci_low: float | None  # Wilson CI of numerator / denominator
    ci_high: float | None
    ci_method: str
    confidence: float
    verdict: str | None
    note: str | None = None


def verdict_for(criterion: Criterion, numerator: int, denominator: int, *,
                strategy_changed: bool) -> str | None:
    if criterion.measure == "proportion":
        if denominator == 0:
            return None
        value = Fraction(numerator, denominator)
    else:
        value = Fraction(numerator)
    for t in criterion.thresholds:
        if t.at_least is None or value >= Fraction(str(t.at_least)):
            if strategy_changed and t.after_strategy_change:
                return t.after_strategy_change
            return t.verdict
    raise AssertionError("the protocol model guarantees a catch-all threshold")


def evaluate(criterion: Criterion, cohort: Sequence[Status], timepoints: Sequence[Timepoint], *,
             strategy_changed: bool) -> CriterionResult:
    denominator = quantity(cohort, criterion.denominator, timepoints)
    numerator = quantity(cohort, criterion.numerator, timepoints) & denominator
    x, n = len(numerator), len(denominator)
    low = high = None
    if n:
        low, high = wilson(x, n, criterion.confidence)
    if criterion.measure == "count":
        value: float | None = float(x)
    else:
        value = x / n if n else None
    verdict = verdict_for(criterion, x, n, strategy_changed=strategy_changed)
    note = None if n else f"no participant counts as {criterion.denominator} yet"
    return CriterionResult(
        key=criterion.key, label=criterion.label, measure=criterion.measure, numerator=x,
        denominator=n, value=value, ci_low=low, ci_high=high, ci_method=criterion.ci_method,
        confidence=criterion.confidence, verdict=verdict, note=note)


def feasibility(criteria: Sequence[Criterion], cohort: Sequence[Status],
                timepoints: Sequence[Timepoint], *, as_of: date,
                strategy_changed_on: date | None) -> list[CriterionResult]:
    changed = strategy_changed_on is not None and strategy_changed_on <= as_of
    return [evaluate(c, cohort, timepoints, strategy_changed=changed) for c in criteria]
