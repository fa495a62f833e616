"""Wilson score interval for a binomial proportion.

Computed with the standard library's normal quantile (`statistics.NormalDist`, Wichura's
AS241, not SciPy: importing SciPy costs the reports process ~80 MB, see bench/memory.py);
the tests check it against statsmodels' `proportion_confint(method="wilson")` to 1e-12.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_STANDARD_NORMAL = NormalDist()


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval; ValueError for n = 0 or x outside 0..n."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    z = -_STANDARD_NORMAL.inv_cdf((1 - confidence) / 2)  # upper quantile, by symmetry
    z2, n = z * z, trials
    p = successes / n
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return centre - half, centre + half
