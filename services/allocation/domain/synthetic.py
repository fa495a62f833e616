"""A SYNTHETIC reference cohort at MPI-D item level, drawn from published figures.

No patient data ships with Tailor. The cohort is drawn from the protocol's published
cluster centroids and shares and the reference sample's means and SDs:

- cluster sizes: the published shares of `size` (largest remainders), rows shuffled;
- spread within a cluster: the reference SD minus the spread of the centroids around
  the mean (law of total variance), so the whole cohort has about the published SDs;
- each patient has a level per scale (centroid + normal noise, scales independent
  within a cluster); each item is that level plus item noise, rounded and clipped to
  0–6; item 1_6 is stored reverse-keyed; items 1_14 and 3_11 are −99 (not applicable)
  for the protocol's share of patients; no item is skipped;
- age: normal, rounded, clipped to the protocol's range; sex: 1 = female at the
  published share; both independent of cluster (they carried little weight).

Every row says `source = synthetic`; `synthetic_cluster` is the cluster the row was
drawn from (for checking the training pipeline, never a training input).
Deterministic for a given seed and numpy version.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from services.core.protocol.allocation import Norm, SyntheticReference

from .scoring import ITEM_MAX, ITEM_MIN, NOT_APPLICABLE, NOT_APPLICABLE_ITEMS, SCALES
from .scoring import REVERSED_ITEMS as REVERSED

SOURCE = "synthetic"
_MIN_LEVEL_SD = 0.1


def within_cluster_sd(reference: SyntheticReference, norms: Mapping[str, Norm]) -> dict[str, float]:
    """Per-scale SD within a cluster implied by the total SD and the centroids' spread."""
    keys = list(reference.clusters)
    shares = np.array([reference.clusters[k].share for k in keys])
    shares = shares / shares.sum()
    spread: dict[str, float] = {}
    for scale in SCALES:
        centroids = np.array([reference.clusters[k].centroid[scale] for k in keys])
        between = float(shares @ (centroids - shares @ centroids) ** 2)
        within = norms[scale].sd ** 2 - between
        if within <= 0:
            raise ValueError(
                f"synthetic_reference: the centroids of scale {scale} spread more than its "
                "reference SD allows")
        spread[scale] = within ** 0.5
    return spread


def cluster_sizes(shares: Mapping[str, float], size: int) -> dict[str, int]:
    """`size` split by `shares` with the largest-remainder method (sums exactly)."""
    total = sum(shares.values())
    exact = {k: size * s / total for k, s in shares.items()}
    sizes = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(exact, key=lambda k: (sizes[k] - exact[k], list(exact).index(k)))
    for k in by_remainder[: size - sum(sizes.values())]:
        sizes[k] += 1
    return sizes


def synthesize_reference(
    reference: SyntheticReference,
    norms: Mapping[str, Norm],
    *,
    seed: int,
    size: int | None = None,
    item_prefix: str = "",
) -> list[dict[str, object]]:
    """The synthetic cohort as rows (record_id, source, synthetic_cluster, age, sex, items)."""
    rng = np.random.default_rng(seed)
    n = reference.size if size is None else size
    if n <= 0:
        raise ValueError("size: the cohort needs at least one patient")
    sizes = cluster_sizes({k: c.share for k, c in reference.clusters.items()}, n)
    labels = np.array([k for k, m in sizes.items() for _ in range(m)])
    labels = labels[rng.permutation(n)]
    level_sd = _level_sd(within_cluster_sd(reference, norms), reference.item_noise_sd)
    rows: list[dict[str, object]] = []
    for i, cluster in enumerate(labels):
        centroid = reference.clusters[str(cluster)].centroid
        row: dict[str, object] = {
            "record_id": f"SYN-{i + 1:04d}",
            "source": SOURCE,
            "synthetic_cluster": str(cluster),
            **_covariates(rng, reference),
        }
        for scale in SCALES.values():
            level = rng.normal(centroid[scale.key], level_sd[scale.key])
            answers = _answers(rng, level, scale.items, reference)
            row.update({item_prefix + item: v for item, v in answers.items()})
        rows.append(row)
    return rows


def _level_sd(within: Mapping[str, float], item_noise_sd: float) -> dict[str, float]:
    # A scale mean also varies by the item noise and rounding averaged over its items;
    # take that out so the scale means spread about as much as `within` says.
    item_var = item_noise_sd**2 + 1 / 12
    return {k: max(_MIN_LEVEL_SD**2, sd**2 - item_var / len(SCALES[k].items)) ** 0.5
            for k, sd in within.items()}


def _covariates(rng: np.random.Generator, reference: SyntheticReference) -> dict[str, int]:
    age = reference.age
    drawn = int(np.clip(np.rint(rng.normal(age.mean, age.sd)), age.min, age.max))
    return {"age": drawn, "sex": int(rng.random() < reference.female_share)}


def _answers(
    rng: np.random.Generator, level: float, items: tuple[str, ...], reference: SyntheticReference,
) -> dict[str, int]:
    noisy = level + rng.normal(0.0, reference.item_noise_sd, size=len(items))
    keyed = np.clip(np.rint(noisy), ITEM_MIN, ITEM_MAX).astype(int)
    answers = {}
    for item, value in zip(items, keyed, strict=True):
        answers[item] = ITEM_MAX - int(value) if item in REVERSED else int(value)
        if item in NOT_APPLICABLE_ITEMS and rng.random() < reference.not_applicable_share:
            answers[item] = NOT_APPLICABLE
    return answers
