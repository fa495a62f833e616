"""Naming the soft k-means components after the protocol's clusters.

A protocol rule says which component a cluster is, e.g. ID = {lowest: [S, SR]}: the
component with the lowest mean support and the lowest mean solicitous responses.
Naming succeeds only when it is unambiguous:

- every criterion of a cluster picks one component, ahead of the runner-up by at
  least `margin` (in SDs of the standardized scales), so noise cannot decide;
- all criteria of a cluster pick the same component;
- different clusters pick different components, and every component gets a name.

Otherwise `AmbiguousClusterNaming` is raised and no model is produced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from services.core.protocol.allocation import ClusterProfile

from .errors import AmbiguousClusterNaming
from .scoring import SCALE_KEYS


def name_components(
    profiles: np.ndarray,
    rules: Mapping[str, ClusterProfile],
    *,
    clusters: Sequence[str],
    margin: float,
) -> list[int]:
    """Component index of each cluster, in `clusters` order.

    `profiles` holds one row per component: its mean on each standardized scale,
    columns in SCALE_KEYS order.
    """
    if set(rules) != set(clusters):
        raise AmbiguousClusterNaming(
            f"cluster_profiles name {sorted(rules)} but the protocol's clusters are "
            f"{list(clusters)}", field="cluster_profiles")
    if profiles.shape != (len(clusters), len(SCALE_KEYS)):
        raise AmbiguousClusterNaming(
            f"{profiles.shape[0]} components for {len(clusters)} clusters", field="clusters")
    chosen = [_pick(cluster, rules[cluster], profiles, margin) for cluster in clusters]
    for i, a in enumerate(clusters):
        for j in range(i):
            if chosen[i] == chosen[j]:
                raise AmbiguousClusterNaming(
                    f"clusters {clusters[j]} and {a} both describe component {chosen[i]}",
                    field=a)
    return chosen


def _pick(cluster: str, rule: ClusterProfile, profiles: np.ndarray, margin: float) -> int:
    picks: dict[str, int] = {}
    criteria = [(s, "highest") for s in rule.highest] + [(s, "lowest") for s in rule.lowest]
    for scale, direction in criteria:
        column = profiles[:, SCALE_KEYS.index(scale)]
        signed = column if direction == "highest" else -column
        order = np.argsort(-signed, kind="stable")
        gap = float(signed[order[0]] - signed[order[1]])
        if gap < margin:
            raise AmbiguousClusterNaming(
                f"cluster {cluster}: {direction} {scale} does not single out a component "
                f"(components {order[0]} and {order[1]} differ by {gap:.2f} SD, "
                f"less than the margin {margin:.2f})", field=cluster)
        picks[f"{direction} {scale}"] = int(order[0])
    if len(set(picks.values())) > 1:
        detail = ", ".join(f"{c} → component {k}" for c, k in picks.items())
        raise AmbiguousClusterNaming(
            f"cluster {cluster}: its profile rules disagree ({detail})", field=cluster)
    return next(iter(picks.values()))
