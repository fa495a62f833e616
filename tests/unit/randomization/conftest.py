"""Fixtures of the randomization domain tests: the PerPAIN design, seeds, keys, CSV text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pytest

from services.core.protocol import RandomizationDesign, TrialProtocol, load_protocol
from services.randomization.domain import ListDesign, Slot, build_design, design_from_protocol

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def protocol() -> TrialProtocol:
    return load_protocol(ROOT / "protocols" / "perpain-pilot.yaml")


@pytest.fixture(scope="session")
def design(protocol: TrialProtocol) -> ListDesign:
    return design_from_protocol(protocol)


@pytest.fixture(scope="session")
def site_design(protocol: TrialProtocol) -> ListDesign:
    r = protocol.randomization.model_dump() | {"stratify_by": ["cluster", "site"],
                                               "sites": ["site-a", "site-b"]}
    return build_design(RandomizationDesign(**r), protocol.clusters, protocol.module_keys)


def seed_of(label: object) -> bytes:
    """A fixed 32-byte seed per label, so statistical tests are repeatable."""
    return hashlib.sha256(f"test seed {label}".encode()).digest()


@pytest.fixture
def seed() -> bytes:
    return seed_of("default")


@pytest.fixture
def key() -> bytes:
    return hashlib.sha256(b"test list key").digest()


def to_csv(slots: Iterable[Slot], delimiter: str = ",") -> str:
    lines = [delimiter.join(("stratum", "seq", "block", "block_length", "module", "arm"))]
    lines += [delimiter.join(map(str, s)) for s in slots]
    return "\n".join(lines) + "\n"
