"""Cluster prediction with the shipped (synthetic) model."""

from __future__ import annotations

import numpy as np
import pytest

from services.allocation.domain import (
    SCALE_KEYS,
    ClusterModel,
    ClusterPredictor,
    InvalidCovariate,
    InvalidScaleScore,
    UnscorableBaseline,
    check_age,
    sex_from_redcap,
    t_scores,
)
from services.core.protocol import TrialProtocol

from .factories import CENTROIDS, answers


@pytest.mark.parametrize("cluster", CENTROIDS)
@pytest.mark.parametrize("age", [18, 25, 35, 45, 55, 65, 75, 90])
@pytest.mark.parametrize("sex", [0, 1])
def test_each_published_centroid_is_predicted_as_its_own_cluster_with_high_probability(
        predictor: ClusterPredictor, cluster: str, age: int, sex: int) -> None:
    prediction = predictor.predict_scales(dict(zip(SCALE_KEYS, CENTROIDS[cluster], strict=True)),
                                          age=age, sex=sex)
    assert prediction.cluster == cluster
    assert prediction.probabilities[cluster] > 0.9
    assert not prediction.low_confidence


def test_probabilities_are_in_protocol_cluster_order_and_sum_to_one(
        predictor: ClusterPredictor, clusters: list[str]) -> None:
    prediction = predictor.predict_scales(dict.fromkeys(SCALE_KEYS, 3.0), age=50, sex=1)
    assert list(prediction.probabilities) == clusters
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
    assert prediction.cluster == max(prediction.probabilities, key=prediction.probabilities.get)


def test_item_level_baseline_from_redcap_fields_predicts_like_its_scale_scores(
        predictor: ClusterPredictor) -> None:
    record = answers(2, {"1_5": 0, "1_10": 1, "1_6": 5, "2_1": 0}, prefix="mpid_")
    from_items = predictor.predict_items(record, age=41, sex=0, item_prefix="mpid_")
    from_scales = predictor.predict_scales(from_items.scales, age=41, sex=0)
    assert from_items == from_scales
    assert from_items.scales["AD"] == pytest.approx((1 + 2 + 2) / 3)


def test_t_scores_standardize_against_the_reference_norms(protocol: TrialProtocol) -> None:
    norms = protocol.allocation.reference_norms
    at_mean = t_scores({k: norms[k].mean for k in SCALE_KEYS}, norms)
    one_sd_up = t_scores({k: norms[k].mean + norms[k].sd for k in SCALE_KEYS}, norms)
    assert at_mean == pytest.approx(dict.fromkeys(SCALE_KEYS, 50.0))
    assert one_sd_up == pytest.approx(dict.fromkeys(SCALE_KEYS, 60.0))
    assert t_scores(dict.fromkeys(SCALE_KEYS, 0.0), norms)["PS"] == pytest.approx(
        50 + 10 * (0 - 3.4338) / 1.2026)


def test_low_confidence_flag_follows_the_threshold_and_keeps_the_most_likely_cluster(
        shipped_model: ClusterModel, protocol: TrialProtocol) -> None:
    between = {k: (a + b) / 2 for k, a, b in zip(SCALE_KEYS, CENTROIDS["ID"], CENTROIDS["AC"],
                                                   strict=True)}
    norms = protocol.allocation.reference_norms
    top = ClusterPredictor(shipped_model, norms=norms, low_confidence_threshold=0.5
                           ).predict_scales(between, age=50, sex=1)
    strict = ClusterPredictor(shipped_model, norms=norms,
                              low_confidence_threshold=min(0.99, top.top_probability + 0.01))
    lenient = ClusterPredictor(shipped_model, norms=norms,
                               low_confidence_threshold=top.top_probability - 0.01)
    flagged = strict.predict_scales(between, age=50, sex=1)
    assert flagged.low_confidence
    assert flagged.cluster == top.cluster
    assert not lenient.predict_scales(between, age=50, sex=1).low_confidence


def test_prediction_carries_the_model_version_from_the_manifest(
        predictor: ClusterPredictor, shipped_model: ClusterModel) -> None:
    prediction = predictor.predict_scales(dict.fromkeys(SCALE_KEYS, 2.0), age=60, sex=0)
    assert prediction.model_version == shipped_model.manifest["model_version"]
    assert prediction.model_version.endswith("@" + shipped_model.sha256[:12])


def test_unscorable_baseline_gives_no_prediction(predictor: ClusterPredictor) -> None:
    with pytest.raises(UnscorableBaseline) as err:
        predictor.predict_items(answers(3, skip=("1_1", "1_7")), age=50, sex=1)
    assert err.value.scales == ("PS",)


@pytest.mark.parametrize(("age", "sex", "field"), [
    (None, 1, "dem_age"), ("old", 1, "dem_age"), (-3, 1, "dem_age"), (150, 1, "dem_age"),
    (50, 2, "dem_sex"), (50, "1", "dem_sex"), (50, True, "dem_sex"), (50, None, "dem_sex"),
])
def test_unusable_age_or_sex_is_refused_naming_the_field(
        predictor: ClusterPredictor, age: object, sex: object, field: str) -> None:
    with pytest.raises(InvalidCovariate) as err:
        predictor.predict_items(answers(3), age=age, sex=sex,
                                age_field="dem_age", sex_field="dem_sex")
    assert err.value.field == field


def test_scale_scores_out_of_range_are_refused(predictor: ClusterPredictor) -> None:
    with pytest.raises(InvalidScaleScore) as err:
        predictor.predict_scales({**dict.fromkeys(SCALE_KEYS, 2.0), "GA": 7}, age=50, sex=1)
    assert err.value.field == "GA"


def test_redcap_sex_codes_map_through_the_protocol(protocol: TrialProtocol) -> None:
    codes = protocol.redcap.sex_codes
    assert sex_from_redcap("1", codes, "dem_sex") == 1
    assert sex_from_redcap(2, codes, "dem_sex") == 0
    with pytest.raises(InvalidCovariate) as err:
        sex_from_redcap("3", codes, "dem_sex")
    assert err.value.field == "dem_sex"
    assert check_age("47") == 47.0


@pytest.mark.parametrize("rows", [5, 300])
def test_batch_probabilities_match_single_predictions(
        predictor: ClusterPredictor, rows: int) -> None:
    rng = np.random.default_rng(rows)
    features = np.column_stack([rng.uniform(0, 6, size=(rows, 9)), rng.integers(18, 90, rows),
                                rng.integers(0, 2, rows)])
    batch = predictor.probabilities(features)
    for i in (0, rows - 1):
        single = predictor.predict_scales(dict(zip(SCALE_KEYS, features[i, :9], strict=True)),
                                          age=features[i, 9], sex=int(features[i, 10]))
        np.testing.assert_allclose(batch[i], list(single.probabilities.values()), atol=1e-12)
