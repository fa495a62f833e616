"""Blinded retention reports: per timepoint and per channel. No arm, no cluster, no module.

Response rate at a timepoint = completed / participants whose window has closed: those
still inside their window are left out until their outcome is known, so the rate neither
drops at every new allocation nor counts early responders twice.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .delivery import DeliveryState
from .schedule import TimepointStatus

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class Proportion:
    successes: int
    n: int
    low: float | None   # Wilson 95% interval; None when n == 0
    high: float | None

    @property
    def rate(self) -> float | None:
        return self.successes / self.n if self.n else None


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n and n > 0, got {successes}/{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int) -> Proportion:
    if n == 0:
        return Proportion(successes, 0, None, None)
    low, high = wilson_interval(successes, n)
    return Proportion(successes, n, low, high)


@dataclass(frozen=True)
class TimepointRecord:
    """One participant at one timepoint, as the report needs it."""

    timepoint: str
    status: TimepointStatus
    window_closed: bool
    reminders_before_completion: int | None = None  # completers only


@dataclass(frozen=True)
class TimepointReport:
    timepoint: str
    scheduled: int
    due: int        # window has opened (includes completed and overdue)
    complete: int
    in_progress: int
    overdue: int
    response: Proportion
    reminders_needed: dict[int, int] = field(default_factory=dict)  # reminders → completers

    @property
    def mean_reminders_needed(self) -> float | None:
        n = sum(self.reminders_needed.values())
        return sum(k * v for k, v in self.reminders_needed.items()) / n if n else None


def timepoint_report(
    records: Iterable[TimepointRecord], order: Sequence[str]
) -> list[TimepointReport]:
    """One row per timepoint key in `order` (the protocol's order)."""
    by_tp: dict[str, list[TimepointRecord]] = defaultdict(list)
    for r in records:
        by_tp[r.timepoint].append(r)
    rows = []
    for tp in order:
        recs = by_tp.get(tp, [])
        status = Counter(r.status for r in recs)
        closed = [r for r in recs if r.window_closed]
        needed = Counter(r.reminders_before_completion for r in recs
                         if r.status is TimepointStatus.COMPLETE
                         and r.reminders_before_completion is not None)
        rows.append(TimepointReport(
            timepoint=tp,
            scheduled=len(recs),
            due=len(recs) - status[TimepointStatus.NOT_DUE],
            complete=status[TimepointStatus.COMPLETE],
            in_progress=status[TimepointStatus.IN_PROGRESS],
            overdue=status[TimepointStatus.OVERDUE],
            response=proportion(
                sum(r.status is TimepointStatus.COMPLETE for r in closed), len(closed)),
            reminders_needed=dict(sorted(needed.items())),
        ))
    return rows


@dataclass(frozen=True)
class ChannelReport:
    channel: str
    scheduled: int
    sent: int        # left us: sent, delivered or undelivered
    delivered: int
    failed: int      # failed to send, or reported undelivered
    cancelled: int


_LEFT_US = {DeliveryState.SENT, DeliveryState.DELIVERED, DeliveryState.UNDELIVERED}


def channel_report(deliveries: Iterable[tuple[str, DeliveryState]]) -> list[ChannelReport]:
    """One row per channel from (channel, current state) of every message."""
    counts: dict[str, Counter[DeliveryState]] = defaultdict(Counter)
    for channel, state in deliveries:
        counts[channel][DeliveryState(state)] += 1
    return [ChannelReport(
        channel=ch,
        scheduled=sum(c.values()),
        sent=sum(c[s] for s in _LEFT_US),
        delivered=c[DeliveryState.DELIVERED],
        failed=c[DeliveryState.FAILED] + c[DeliveryState.UNDELIVERED],
        cancelled=c[DeliveryState.CANCELLED],
    ) for ch, c in sorted(counts.items())]
