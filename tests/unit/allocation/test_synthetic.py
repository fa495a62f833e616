"""The synthetic reference cohort: labelled, deterministic, shaped like the published one."""

from __future__ import annotations

import numpy as np
import pytest

from services.allocation.domain import ITEM_KEYS, cohort_from_rows, synthesize_reference
from services.allocation.domain.synthetic import cluster_sizes, within_cluster_sd
from services.core.protocol import TrialProtocol


@pytest.fixture(scope="module")
def cohort_rows(protocol: TrialProtocol) -> list[dict[str, object]]:
    rules = protocol.allocation
    return synthesize_reference(rules.synthetic_reference, rules.reference_norms, seed=5,
                                item_prefix="mpid_")


def test_every_row_is_labelled_synthetic(cohort_rows: list[dict[str, object]]) -> None:
    assert all(r["source"] == "synthetic" for r in cohort_rows)
    assert all(str(r["record_id"]).startswith("SYN-") for r in cohort_rows)


def test_default_size_and_cluster_shares_follow_the_published_reference_sample(
        cohort_rows: list[dict[str, object]]) -> None:
    counts = {c: sum(r["synthetic_cluster"] == c for r in cohort_rows) for c in ("DYS", "ID", "AC")}
    assert counts == {"DYS": 107, "ID": 116, "AC": 122}


def test_same_seed_gives_the_same_cohort_and_another_seed_a_different_one(
        protocol: TrialProtocol, cohort_rows: list[dict[str, object]]) -> None:
    rules = protocol.allocation
    again = synthesize_reference(rules.synthetic_reference, rules.reference_norms, seed=5,
                                 item_prefix="mpid_")
    other = synthesize_reference(rules.synthetic_reference, rules.reference_norms, seed=6,
                                 item_prefix="mpid_")
    assert again == cohort_rows
    assert other != cohort_rows


def test_items_are_in_range_with_not_applicable_only_where_allowed(
        cohort_rows: list[dict[str, object]]) -> None:
    for item in ITEM_KEYS:
        values = {r[f"mpid_{item}"] for r in cohort_rows}
        allowed = set(range(7)) | ({-99} if item in ("1_14", "3_11") else set())
        assert values <= allowed, item
    assert any(r["mpid_1_14"] == -99 for r in cohort_rows)


def test_scored_cohort_has_about_the_published_means_and_plausible_age_and_sex(
        protocol: TrialProtocol, cohort_rows: list[dict[str, object]]) -> None:
    cohort = cohort_from_rows(cohort_rows, item_prefix="mpid_")
    assert cohort.features.shape == (345, 11) and not cohort.excluded
    norms = protocol.allocation.reference_norms
    means = cohort.features.mean(axis=0)
    for i, scale in enumerate(norms):
        assert abs(means[i] - norms[scale].mean) < 0.35, scale
    ages, sexes = cohort.features[:, 9], cohort.features[:, 10]
    assert 18 <= ages.min() and ages.max() <= 85 and 45 < ages.mean() < 56
    assert set(np.unique(sexes)) == {0.0, 1.0} and 0.5 < sexes.mean() < 0.68


def test_within_cluster_spread_is_what_the_reference_sd_leaves_after_the_centroids(
        protocol: TrialProtocol) -> None:
    rules = protocol.allocation
    within = within_cluster_sd(rules.synthetic_reference, rules.reference_norms)
    shares = {"DYS": 0.310, "ID": 0.336, "AC": 0.354}
    centroid_ps = {"DYS": 4.42, "ID": 3.38, "AC": 2.61}
    mean = sum(shares[c] * centroid_ps[c] for c in shares)
    between = sum(shares[c] * (centroid_ps[c] - mean) ** 2 for c in shares)
    assert within["PS"] == pytest.approx((1.2026**2 - between) ** 0.5)


def test_cluster_sizes_split_exactly_by_largest_remainder() -> None:
    assert cluster_sizes({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert sum(cluster_sizes({"a": 0.31, "b": 0.336, "c": 0.354}, 101).values()) == 101
