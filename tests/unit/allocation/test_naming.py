"""Naming soft k-means components after the protocol's clusters, or refusing to."""

from __future__ import annotations

import numpy as np
import pytest

from services.allocation.domain import SCALE_KEYS, AmbiguousClusterNaming, name_components
from services.core.protocol import TrialProtocol
from services.core.protocol.allocation import ClusterProfile

from .factories import CENTROIDS


def _standardized(protocol: TrialProtocol, rows: list[tuple[float, ...]]) -> np.ndarray:
    norms = protocol.allocation.reference_norms
    mean = np.array([norms[k].mean for k in SCALE_KEYS])
    sd = np.array([norms[k].sd for k in SCALE_KEYS])
    return (np.array(rows) - mean) / sd


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
def test_published_profiles_are_named_whatever_order_the_components_come_in(
        protocol: TrialProtocol, clusters: list[str], order: tuple[int, ...]) -> None:
    components = [CENTROIDS[clusters[i]] for i in order]
    named = name_components(_standardized(protocol, components), protocol.allocation.
                            cluster_profiles, clusters=clusters, margin=0.25)
    assert [clusters[order[i]] for i in named] == clusters


def test_components_too_close_on_a_rule_scale_are_refused(
        protocol: TrialProtocol, clusters: list[str]) -> None:
    ac_like_id = list(CENTROIDS["AC"])
    ac_like_id[SCALE_KEYS.index("S")] = CENTROIDS["ID"][SCALE_KEYS.index("S")] + 0.05
    profiles = _standardized(protocol, [CENTROIDS["DYS"], CENTROIDS["ID"], tuple(ac_like_id)])
    with pytest.raises(AmbiguousClusterNaming) as err:
        name_components(profiles, protocol.allocation.cluster_profiles, clusters=clusters,
                        margin=0.25)
    assert err.value.field == "ID"
    assert "lowest S" in str(err.value)


def test_rules_of_one_cluster_that_pick_different_components_are_refused(
        protocol: TrialProtocol, clusters: list[str]) -> None:
    # the AC-like component loses the lowest interference to the ID-like one
    id_low_interference = list(CENTROIDS["ID"])
    id_low_interference[SCALE_KEYS.index("I")] = 1.0
    profiles = _standardized(protocol, [CENTROIDS["DYS"], tuple(id_low_interference),
                                        CENTROIDS["AC"]])
    with pytest.raises(AmbiguousClusterNaming, match="disagree") as err:
        name_components(profiles, protocol.allocation.cluster_profiles, clusters=clusters,
                        margin=0.25)
    assert err.value.field == "AC"


def test_two_clusters_describing_the_same_component_are_refused(
        protocol: TrialProtocol, clusters: list[str]) -> None:
    rules = {**protocol.allocation.cluster_profiles, "DYS": ClusterProfile(highest=["LC"])}
    profiles = _standardized(protocol, [CENTROIDS[c] for c in clusters])
    with pytest.raises(AmbiguousClusterNaming, match="both describe"):
        name_components(profiles, rules, clusters=clusters, margin=0.25)


def test_rules_must_name_exactly_the_protocol_clusters(
        protocol: TrialProtocol, clusters: list[str]) -> None:
    rules = dict(protocol.allocation.cluster_profiles)
    del rules["AC"]
    profiles = _standardized(protocol, [CENTROIDS[c] for c in clusters])
    with pytest.raises(AmbiguousClusterNaming) as err:
        name_components(profiles, rules, clusters=clusters, margin=0.25)
    assert err.value.field == "cluster_profiles"
