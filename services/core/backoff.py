"""The one retry-wait formula of Tailor: exponential, capped, with "equal jitter".

Retry number `attempt` (1, 2, …) waits between half and all of
`step = min(cap, base · 2^(attempt-1))`: half the step is fixed, the other half uniform.
Replicas that failed together spread out over the second half, yet none retries at once
(the floor is step/2). Used by bus redeliveries, NATS connection attempts, REDCap retries
and notification sends; only the base and the cap differ.
"""

from __future__ import annotations

import random
from collections.abc import Callable

_MAX_EXPONENT = 62  # 2**62 already exceeds any cap; keeps the float finite


def backoff_seconds(attempt: int, *, base: float, cap: float,
                    rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry `attempt` (counting from 1); `rand()` in [0, 1)."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if base <= 0 or cap <= 0:
        raise ValueError("base and cap must be positive")
    step = min(cap, base * 2 ** min(attempt - 1, _MAX_EXPONENT))
    return step / 2 + step / 2 * rand()
