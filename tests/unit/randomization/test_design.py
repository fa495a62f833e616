"""The list design follows the protocol: strata, 2:1:1 weights, arms, block lengths."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.protocol import RandomizationDesign, TrialProtocol
from services.randomization.domain import (
    DesignError,
    ListDesign,
    NotInDesignError,
    build_design,
    stratum_key,
)


def test_perpain_strata_are_the_three_clusters(design: ListDesign) -> None:
    assert design.stratum_keys == ("AC", "DYS", "ID")
    assert design.block_lengths == (4, 8, 12)
    assert not design.by_site


@pytest.mark.parametrize(("cluster", "matching"), [("DYS", "PERT"), ("ID", "EDDT"),
                                                   ("AC", "EMDI")])
def test_matching_module_weighs_two_and_each_other_module_one(
        design: ListDesign, cluster: str, matching: str) -> None:
    stratum = design.stratum(cluster)
    weights = dict(stratum.weights)
    assert weights.pop(matching) == 2
    assert sorted(weights.values()) == [1, 1]
    assert stratum.unit == 4
    assert stratum.expected_counts(12)[matching] == 6


def test_arm_follows_the_modules_relation_to_the_cluster(design: ListDesign) -> None:
    dys = design.stratum("DYS")
    assert dys.arm_of("PERT") == "personalized"
    assert dys.arm_of("EDDT") == dys.arm_of("EMDI") == "non_personalized"
    assert design.stratum("ID").arm_of("PERT") == "non_personalized"


def test_block_pattern_holds_the_exact_ratio(design: ListDesign) -> None:
    pattern = design.stratum("ID").block_pattern(8)
    assert sorted(pattern) == sorted(["EDDT"] * 4 + ["PERT"] * 2 + ["EMDI"] * 2)


def test_a_block_length_off_the_ratio_is_refused(design: ListDesign) -> None:
    with pytest.raises(DesignError) as err:
        design.stratum("DYS").expected_counts(6)
    assert err.value.field == "block_length"


def test_site_strata_combine_cluster_and_site(site_design: ListDesign) -> None:
    assert site_design.stratum_keys == ("AC|site-a", "AC|site-b", "DYS|site-a", "DYS|site-b",
                                        "ID|site-a", "ID|site-b")
    assert site_design.stratum_for("DYS", "site-b").key == stratum_key("DYS", "site-b")
    assert site_design.stratum("DYS|site-b").matching_module == "PERT"


def test_site_stratification_needs_a_known_site(site_design: ListDesign) -> None:
    with pytest.raises(NotInDesignError) as missing:
        site_design.stratum_for("DYS")
    with pytest.raises(NotInDesignError) as unknown:
        site_design.stratum_for("DYS", "site-z")
    assert missing.value.field == unknown.value.field == "site"


def test_unknown_cluster_and_stratum_name_their_field(design: ListDesign) -> None:
    with pytest.raises(NotInDesignError) as cluster:
        design.stratum_for("XYZ")
    with pytest.raises(NotInDesignError) as stratum:
        design.stratum("DYS|site-a")
    assert cluster.value.field == "cluster"
    assert stratum.value.field == "stratum"
    assert "DYS" in str(stratum.value)


def test_block_lengths_must_be_multiples_of_the_weight_sum(protocol: TrialProtocol) -> None:
    # model_copy skips the protocol's own check, as a hand-built design would.
    r = protocol.randomization.model_copy(update={"block_lengths": [4, 6]})
    with pytest.raises(DesignError) as err:
        build_design(r, protocol.clusters, protocol.module_keys)
    assert err.value.field == "randomization.block_lengths[1]"


def test_matching_module_must_be_a_module(protocol: TrialProtocol) -> None:
    with pytest.raises(DesignError) as err:
        build_design(protocol.randomization, protocol.clusters, ["PERT", "EDDT"])
    assert err.value.field == "clusters[2].matching_module"


@pytest.mark.parametrize(("change", "message"), [
    ({"stratify_by": ["site"], "sites": ["a"]}, "must include 'cluster'"),
    ({"stratify_by": ["cluster", "cluster"]}, "listed twice"),
    ({"sites": ["site|a"]}, "no '|'"),
    ({"sites": ["a", "a"]}, "distinct"),
    ({"initial_slots_per_stratum": 0}, "greater than 0"),
])
def test_protocol_rejects_unusable_stratification(protocol: TrialProtocol, change: dict,
                                                  message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RandomizationDesign(**(protocol.randomization.model_dump() | change))


def test_protocol_sets_the_initial_list_size(design: ListDesign) -> None:
    assert design.initial_slots_per_stratum == 105
