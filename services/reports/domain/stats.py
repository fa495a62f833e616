"""Wilson score interval for a binomial proportion.

Computed with SciPy's normal quantile (SciPy is already a dependency through scikit-learn);
the tests check it against statsmodels' `proportion_confint(method="wilson")` to 1e-12.
"""

from __future__ import annotations

import math

from scipy.stats import norm


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval; ValueError for n = 0 or x outside 0..n."""
    if trials <= 0:
        raise ValueError("a proportion needs at least one trial")
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} outside 0..{trials}")
    z = float(norm.isf((1 - confidence) / 2))
    z2, n = z * z, trials
    p = successes / n
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return centre - half, centre + half
