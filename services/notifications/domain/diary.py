"""Diary prompts (momentary sampling): N random times a day inside the waking window.

Times are drawn with a counter-based hash (SplitMix64) of (seed, participant, day, prompt),
so a prompt's time depends on nothing else: generating 2 days ahead every night gives the
same prompts as generating all 84 days at once, in any process, in any batch order.
Spacing: N uniform draws in [0, window − (N−1)·gap], sorted, plus k·gap for the k-th — every
valid arrangement is equally likely and consecutive prompts are ≥ gap apart. A window that
is shorter in real time on a DST day keeps the gap and may end up to an hour late.
Prompts expire unanswered; they are never reminded.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from services.core.protocol.notifications import DiaryPolicy

from .clock import local_to_utc, participant_zone, require_utc
from .errors import NotificationError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_CHUNK = 2048  # participants per vectorised step: bounds temporary memory


@dataclass(frozen=True)
class DiaryParticipant:
    participant: str
    zone: str              # IANA zone name
    first_day: date        # local date of diary day 0
    waking_start: time | None = None  # the participant's own window, else the policy's
    waking_end: time | None = None


@dataclass(frozen=True)
class DiaryPrompt:
    participant: str
    day: int       # diary day, 0-based
    index: int     # prompt of the day, 0-based, in time order
    at: datetime   # UTC
    expires_at: datetime
    key: str       # idempotency key


@dataclass(frozen=True)
class DiaryBatch:
    """Prompts for `participants` × diary days [from_day, from_day + days) × N per day."""

    participants: tuple[str, ...]
    from_day: int
    at: np.ndarray          # int64 UTC epoch seconds, shape (participants, days, N)
    expires_after: int      # seconds

    def __len__(self) -> int:
        return int(self.at.size)

    def prompts(self) -> Iterator[DiaryPrompt]:
        ttl = timedelta(seconds=self.expires_after)
        for p, name in enumerate(self.participants):
            for d in range(self.at.shape[1]):
                for k, ts in enumerate(self.at[p, d].tolist()):
                    at = datetime.fromtimestamp(ts, UTC)
                    day = self.from_day + d
                    yield DiaryPrompt(name, day, k, at, at + ttl, prompt_key(name, day, k))


def prompt_key(participant: str, day: int, index: int) -> str:
    raw = "\x1f".join(("prompt", participant, str(day), str(index)))
    return hashlib.sha256(raw.encode()).hexdigest()[:40]


def _participant_key(seed: int, participant: str) -> np.uint64:
    digest = hashlib.blake2b(f"{seed}\x1f{participant}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


def _uniform(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """SplitMix64 of key + counter·φ, as floats in [0, 1); shapes broadcast."""
    with np.errstate(over="ignore"):
        z = keys + (counters + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _window_table(zone: str, start: time, end: time, first: date, n: int) -> np.ndarray:
    """(n, 2) int64: UTC epoch seconds of window start and its real length, per local day."""
    tz = participant_zone(zone, zone)
    wraps = end <= start
    out = np.empty((n, 2), dtype=np.int64)
    for i in range(n):
        d = first + timedelta(days=i)
        s = local_to_utc(d, start, tz)
        e = local_to_utc(d + timedelta(days=1) if wraps else d, end, tz)
        out[i] = (int(s.timestamp()), int((e - s).total_seconds()))
    return out


def diary_prompts(
    participants: Sequence[DiaryParticipant],
    policy: DiaryPolicy,
    *,
    seed: int,
    from_day: int = 0,
    days: int | None = None,
) -> DiaryBatch:
    """Prompts for diary days [from_day, from_day + days), clipped to the diary's length."""
    if from_day < 0:
        raise NotificationError("from_day must be ≥ 0", field="from_day")
    span = max(0, min(policy.days - from_day, policy.days if days is None else days))
    n, gap = policy.prompts_per_day, policy.min_gap_minutes * 60
    at = np.empty((len(participants), span, n), dtype=np.int64)
    groups: dict[tuple[str, time, time], list[int]] = defaultdict(list)
    for i, p in enumerate(participants):
        groups[(p.zone, p.waking_start or policy.waking_start,
                p.waking_end or policy.waking_end)].append(i)
    day_idx = np.arange(from_day, from_day + span, dtype=np.int64)
    counters = (day_idx[:, None] * n + np.arange(n)).astype(np.uint64)  # (span, n)
    for (zone, start, end), members in groups.items():
        firsts = np.array([participants[i].first_day.toordinal() for i in members])
        lo = int(firsts.min())
        table = _window_table(zone, start, end, date.fromordinal(lo + from_day),
                              int(firsts.max()) - lo + span)
        for c in range(0, len(members), _CHUNK):
            rows = np.array(members[c:c + _CHUNK])
            keys = np.array([_participant_key(seed, participants[i].participant) for i in rows],
                            dtype=np.uint64)
            win = table[(firsts[c:c + _CHUNK] - lo)[:, None] + np.arange(span)]  # (P, span, 2)
            slack = np.maximum(win[..., 1] - (n - 1) * gap, 0) // 60  # whole minutes
            u = np.sort(_uniform(keys[:, None, None], counters[None]), axis=-1)
            minutes = np.floor(u * slack[..., None]).astype(np.int64)
            at[rows] = win[..., :1] + (minutes * 60 + np.arange(n) * gap)
    return DiaryBatch(tuple(p.participant for p in participants), from_day, at,
                      policy.expires_after_minutes * 60)


def prompt_is_open(prompt: DiaryPrompt, now: datetime) -> bool:
    """A prompt can be answered from its time until it expires."""
    return prompt.at <= require_utc(now, "now") < prompt.expires_at


@dataclass(frozen=True)
class PromptOutcome:
    participant: str
    day: int
    sent_at: datetime | None
    answered_at: datetime | None
    expires_at: datetime


@dataclass(frozen=True)
class DayAdherence:
    participant: str
    day: int
    scheduled: int
    sent: int
    answered: int  # answered before expiry

    @property
    def rate(self) -> float | None:
        return self.answered / self.sent if self.sent else None


def diary_adherence(outcomes: Iterable[PromptOutcome]) -> list[DayAdherence]:
    """Per participant and diary day: prompts scheduled, sent, and answered in time."""
    counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for o in outcomes:
        c = counts[(o.participant, o.day)]
        c[0] += 1
        if o.sent_at is not None:
            c[1] += 1
            if o.answered_at is not None and o.answered_at < o.expires_at:
                c[2] += 1
    return [DayAdherence(p, d, *c) for (p, d), c in sorted(counts.items())]
