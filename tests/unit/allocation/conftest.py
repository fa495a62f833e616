"""Fixtures of the allocation unit tests: the protocol, the shipped model, small cohorts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.allocation.domain import (
    ClusterModel,
    ClusterPredictor,
    cohort_from_rows,
    read_model,
    synthesize_reference,
)
from services.allocation.domain.cohort import ReferenceCohort
from services.core.protocol import TrialProtocol, load_protocol
from services.core.protocol.allocation import TrainingSettings

ROOT = Path(__file__).resolve().parents[3]
PROTOCOL_FILE = ROOT / "protocols" / "perpain-pilot.yaml"


@pytest.fixture(scope="session")
def protocol() -> TrialProtocol:
    return load_protocol(PROTOCOL_FILE)


@pytest.fixture(scope="session")
def clusters(protocol: TrialProtocol) -> list[str]:
    return [c.key for c in protocol.clusters]


@pytest.fixture(scope="session")
def shipped_model(protocol: TrialProtocol, clusters: list[str]) -> ClusterModel:
    model = protocol.allocation.model
    return read_model(ROOT / model.path, expected_sha256=model.sha256, clusters=clusters)


@pytest.fixture(scope="session")
def predictor(shipped_model: ClusterModel, protocol: TrialProtocol) -> ClusterPredictor:
    return ClusterPredictor.from_rules(shipped_model, protocol.allocation)


@pytest.fixture(scope="session")
def small_settings(protocol: TrialProtocol) -> TrainingSettings:
    """Fewer trees and restarts than the protocol's, to keep training tests fast."""
    return protocol.allocation.training.model_copy(
        update={"trees": 25, "mixture_inits": 3, "cv_folds": 3})


@pytest.fixture(scope="session")
def small_cohort(protocol: TrialProtocol) -> ReferenceCohort:
    rules = protocol.allocation
    rows = synthesize_reference(rules.synthetic_reference, rules.reference_norms,
                                seed=7, size=150, item_prefix="mpid_")
    return cohort_from_rows(rows, item_prefix="mpid_")

