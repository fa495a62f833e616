"""Model artifacts: shipped files agree, tampering and mismatches are refused."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from services.allocation.domain import (
    FEATURES,
    MANIFEST_NAME,
    ArtifactIntegrityError,
    ClusterModel,
    ModelArtifactError,
    load_model,
    read_model,
    serialize_forest,
    sha256_hex,
)
from services.allocation.domain.forest import FlatForest
from services.core.protocol import TrialProtocol

from .conftest import ROOT


@pytest.fixture(scope="module")
def shipped(protocol: TrialProtocol) -> tuple[bytes, dict[str, Any]]:
    path = ROOT / protocol.allocation.model.path
    return path.read_bytes(), json.loads(path.with_name(MANIFEST_NAME).read_text())


def test_shipped_manifest_and_protocol_name_the_shipped_artifact(
        protocol: TrialProtocol, shipped: tuple[bytes, dict[str, Any]]) -> None:
    artifact, manifest = shipped
    sha = sha256_hex(artifact)
    assert manifest["artifact"]["sha256"] == sha == protocol.allocation.model.sha256
    assert manifest["artifact"]["bytes"] == len(artifact)
    assert manifest["features"] == list(FEATURES)
    assert manifest["classes"] == [c.key for c in protocol.clusters]
    assert manifest["synthetic"] is True
    assert set(manifest["library_versions"]) == {"python", "numpy", "scipy", "scikit-learn",
                                                 "skops"}
    assert len(artifact) < 5_000_000


def test_shipped_model_card_states_its_synthetic_origin_metrics_and_limits(
        protocol: TrialProtocol, shipped: tuple[bytes, dict[str, Any]]) -> None:
    card = (ROOT / protocol.allocation.model.path).with_name("MODEL_CARD.md").read_text()
    assert "SYNTHETIC" in card
    assert "cross-validated accuracy" in card and "## Limits" in card
    assert shipped[1]["artifact"]["sha256"] in card


def test_a_tampered_artifact_is_refused(
        protocol: TrialProtocol, shipped: tuple[bytes, dict[str, Any]], clusters: list[str]
) -> None:
    artifact, manifest = shipped
    tampered = bytearray(artifact)
    tampered[len(tampered) // 2] ^= 0x01
    with pytest.raises(ArtifactIntegrityError) as err:
        load_model(bytes(tampered), manifest, expected_sha256=protocol.allocation.model.sha256,
                   clusters=clusters)
    assert err.value.field == "allocation.model.sha256"


def test_a_file_on_disk_that_differs_from_the_protocol_hash_is_refused(
        tmp_path: Path, protocol: TrialProtocol, shipped: tuple[bytes, dict[str, Any]],
        clusters: list[str]) -> None:
    artifact, manifest = shipped
    (tmp_path / "m.skops").write_bytes(artifact + b"\0")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError):
        read_model(tmp_path / "m.skops", expected_sha256=protocol.allocation.model.sha256,
                   clusters=clusters)


@pytest.mark.parametrize(("key", "value"), [
    ("classes", ["ID", "DYS", "AC"]),
    ("features", ["age", "sex", "PS", "I", "LC", "AD", "S", "PR", "SR", "DR", "GA"]),
    ("format", "something-else/9"),
    ("artifact", {"sha256": "0" * 64}),
])
def test_a_manifest_that_does_not_describe_the_artifact_is_refused(
        shipped: tuple[bytes, dict[str, Any]], clusters: list[str], key: str, value: object,
) -> None:
    artifact, manifest = shipped
    wrong = {**copy.deepcopy(manifest), key: value}
    with pytest.raises(ModelArtifactError) as err:
        load_model(artifact, wrong, expected_sha256=sha256_hex(artifact), clusters=clusters)
    assert err.value.field.startswith(f"manifest.{key}")


def test_an_artifact_holding_another_estimator_is_refused(
        shipped: tuple[bytes, dict[str, Any]], clusters: list[str]) -> None:
    other = LogisticRegression().fit(np.eye(11)[:3], [0, 1, 2])
    data = sio.dumps(other)
    manifest = {**shipped[1], "artifact": {"sha256": sha256_hex(data)}}
    with pytest.raises(ModelArtifactError, match="not a random forest"):
        load_model(data, manifest, expected_sha256=sha256_hex(data), clusters=clusters)


def test_serialization_is_reproducible_and_loads_back_the_same_forest(
        shipped_model: ClusterModel) -> None:
    once, twice = serialize_forest(shipped_model.forest), serialize_forest(shipped_model.forest)
    assert once == twice
    names = zipfile.ZipFile(io.BytesIO(once)).infolist()
    assert {i.date_time for i in names} == {(1980, 1, 1, 0, 0, 0)}
    loaded = sio.loads(once, trusted=["sklearn.tree._tree.Tree"])
    x = np.random.default_rng(3).uniform(0, 6, size=(50, len(FEATURES)))
    assert np.array_equal(loaded.predict_proba(x), shipped_model.forest.predict_proba(x))


def test_flattened_forest_gives_scikit_learn_probabilities(shipped_model: ClusterModel) -> None:
    rng = np.random.default_rng(11)
    x = np.column_stack([rng.uniform(0, 6, size=(500, 9)), rng.integers(18, 90, 500),
                         rng.integers(0, 2, 500)])
    flat = shipped_model.flat.predict_proba(x)
    np.testing.assert_allclose(flat, shipped_model.forest.predict_proba(x), rtol=0, atol=1e-12)


def test_a_forest_with_out_of_range_node_indices_is_refused(shipped_model: ClusterModel) -> None:
    forest = copy.deepcopy(shipped_model.forest)
    state = forest.estimators_[0].tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 10_000_000  # points far beyond the tree
    forest.estimators_[0].tree_.__setstate__({**state, "nodes": nodes})
    with pytest.raises(ValueError, match="inconsistent node structure"):
        FlatForest.from_forest(forest)

