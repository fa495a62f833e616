"""Per-key token buckets: a key may burst up to `burst` requests, then `rate` per second.

Pure: the clock is injected, nothing is shared beyond this object. One limiter
per gateway process; with several replicas each enforces its own share, which
is what a safety limit (not a billing quota) needs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: float  # seconds until the request would be allowed; 0 when allowed

    @property
    def retry_after_header(self) -> str:
        """The `Retry-After` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(self.retry_after)))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate: must be positive")
        if burst < 1:
            raise ValueError("burst: must be at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> RateDecision:
        """Take `cost` tokens from `key`'s bucket if it holds them."""
        if not 0 < cost <= self.burst:
            raise ValueError("cost: must be positive and at most the burst")
        with self._lock:
            now = self._clock()
            bucket = self._refilled(key, now)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return RateDecision(True, 0.0)
            return RateDecision(False, (cost - bucket.tokens) / self.rate)

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            return bucket
        elapsed = max(0.0, now - bucket.updated)  # a clock that steps back adds nothing
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = max(bucket.updated, now)
        return bucket

    def _forget_full(self, now: float) -> None:
        # A bucket that has refilled completely is indistinguishable from a new one.
        idle = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= idle]:
            del self._buckets[key]
