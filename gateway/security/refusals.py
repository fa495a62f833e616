"""Refused credentials of a known key id, summarised for the audit chain.

Each refusal of a well-formed key of ours (wrong secret, expired, revoked) is worth
knowing, but one audit entry per refusal would let anyone holding a key id grow the chain
without bound. A few refusals per key id are recorded one by one; beyond that, refusals
are counted here and the next recorded entry says how many were left out since the last
one. The entries per key id are thus bounded by the bucket's rate, whatever the traffic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from gateway.auth.rate_limit import RateLimiter

# Per key id: 5 entries at once, then one a minute.
AUDIT_BURST = 5.0
AUDIT_PER_SECOND = 1 / 60


@dataclass
class RefusalSummary:
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(
        rate=AUDIT_PER_SECOND, burst=AUDIT_BURST))
    _left_out: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, key_id: str) -> int | None:
        """None: count this refusal only. Else: record it, with this many left out before it."""
        with self._lock:
            if not self.limiter.check(f"audit:{key_id}").allowed:
                self._left_out[key_id] = self._left_out.get(key_id, 0) + 1
                return None
            return self._left_out.pop(key_id, 0)
