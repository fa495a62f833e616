"""Training: reference cohort parsing, clustering, forest, reproducible artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from services.allocation.domain import (
    SCALE_KEYS,
    AmbiguousClusterNaming,
    TrainingDataError,
    cohort_from_rows,
    serialize_forest,
    sha256_hex,
    train_cluster_model,
)
from services.allocation.domain.cohort import ReferenceCohort
from services.core.protocol import TrialProtocol
from services.core.protocol.allocation import TrainingSettings

from .factories import answers


def _train(protocol: TrialProtocol, cohort: ReferenceCohort, settings: TrainingSettings):
    return train_cluster_model(
        cohort.features, clusters=[c.key for c in protocol.clusters],
        rules=protocol.allocation.cluster_profiles, settings=settings,
        synthetic_clusters=cohort.reference_labels)


def test_training_twice_with_the_same_seed_gives_the_same_artifact_hash(
        protocol: TrialProtocol, small_cohort: ReferenceCohort, small_settings: TrainingSettings,
) -> None:
    first = serialize_forest(_train(protocol, small_cohort, small_settings).forest)
    second = serialize_forest(_train(protocol, small_cohort, small_settings).forest)
    assert sha256_hex(first) == sha256_hex(second)
    reseeded = small_settings.model_copy(update={"seed": small_settings.seed + 1})
    other = serialize_forest(_train(protocol, small_cohort, reseeded).forest)
    assert sha256_hex(other) != sha256_hex(first)


def test_training_recovers_the_clusters_the_synthetic_cohort_was_drawn_from(
        protocol: TrialProtocol, small_cohort: ReferenceCohort, small_settings: TrainingSettings,
) -> None:
    trained = _train(protocol, small_cohort, small_settings)
    m = trained.metrics
    assert m.synthetic_cluster_agreement is not None and m.synthetic_cluster_agreement > 0.8
    assert 0.75 < m.cv_accuracy <= 1 and 0.75 < m.oob_accuracy <= 1
    assert len(m.cv_fold_accuracies) == small_settings.cv_folds
    matrix = np.array(m.confusion_matrix)
    assert matrix.sum() == 150
    assert matrix.sum(axis=1).tolist() == list(m.cluster_sizes.values())
    assert np.trace(matrix) / 150 == pytest.approx(m.cv_accuracy)
    assert sum(m.feature_importances.values()) == pytest.approx(1.0)
    profiles = trained.reference.profiles
    assert profiles["ID"]["S"] < min(profiles["DYS"]["S"], profiles["AC"]["S"])
    assert profiles["AC"]["LC"] > max(profiles["DYS"]["LC"], profiles["ID"]["LC"])


def test_training_refuses_clusters_too_small_to_cross_validate(
        protocol: TrialProtocol, small_cohort: ReferenceCohort, small_settings: TrainingSettings,
) -> None:
    # 150 patients in three clusters cannot fill 60 folds in every cluster
    with pytest.raises(TrainingDataError) as err:
        _train(protocol, small_cohort, small_settings.model_copy(update={"cv_folds": 60}))
    assert err.value.field == "rows"
    assert "at least 60 patients" in str(err.value)


def test_scale_level_rows_train_like_item_level_rows(small_cohort: ReferenceCohort) -> None:
    rows = [{**dict(zip(SCALE_KEYS, map(str, f[:9]), strict=True)), "age": str(f[9]),
             "sex": str(int(f[10]))} for f in small_cohort.features]
    scale_level = cohort_from_rows(rows, item_prefix="mpid_")
    assert scale_level.level == "scale"
    np.testing.assert_allclose(scale_level.features, small_cohort.features)


def test_unscorable_or_incomplete_rows_are_left_out_and_reported() -> None:
    rows = [
        {**answers(3, prefix="mpid_"), "age": "50", "sex": "1"},
        {**answers(3, skip=("1_1", "1_7"), prefix="mpid_"), "age": "51", "sex": "0"},
        {**answers(4, prefix="mpid_"), "age": "", "sex": "0"},
    ]
    cohort = cohort_from_rows(rows, item_prefix="mpid_")
    assert cohort.features.shape == (1, 11)
    assert [e.row for e in cohort.excluded] == [2, 3]
    assert "PS" in cohort.excluded[0].reason and "age" in cohort.excluded[1].reason


@pytest.mark.parametrize(("row", "field"), [
    ({**answers(3, {"2_5": 9}, prefix="mpid_"), "age": "50", "sex": "1"}, "mpid_2_5"),
    ({**answers(3, prefix="mpid_"), "age": "50", "sex": "2"}, "sex"),
    ({**answers(3, prefix="mpid_"), "age": "fifty", "sex": "1"}, "age"),
    ({"age": "50", "sex": "1"}, "columns"),
])
def test_invalid_reference_data_stops_training_naming_the_column(
        row: dict[str, object], field: str) -> None:
    with pytest.raises(TrainingDataError) as err:
        cohort_from_rows([row], item_prefix="mpid_")
    assert err.value.field == field


def test_training_data_hash_depends_on_the_values(small_cohort: ReferenceCohort) -> None:
    changed = small_cohort.features.copy()
    changed[0, 0] += 0.5
    assert ReferenceCohort(changed, "item", (), None).sha256 != small_cohort.sha256
    assert ReferenceCohort(small_cohort.features.copy(), "item", (), None).sha256 == \
        small_cohort.sha256


def test_training_refuses_to_name_clusters_that_its_rules_cannot_tell_apart(
        protocol: TrialProtocol, small_cohort: ReferenceCohort, small_settings: TrainingSettings,
) -> None:
    demanding = small_settings.model_copy(update={"naming_margin_sd": 5.0})
    with pytest.raises(AmbiguousClusterNaming, match="does not single out"):
        _train(protocol, small_cohort, demanding)
