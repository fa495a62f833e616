"""Fixtures of the safety domain tests: the real PerPAIN protocol's safety section."""

from __future__ import annotations

import pytest

from services.core.protocol import TrialProtocol, load_protocol
from services.core.protocol.safety import SafetyRules

from .safety_factories import ROOT


@pytest.fixture(scope="session")
def protocol() -> TrialProtocol:
    return load_protocol(ROOT / "protocols" / "perpain-pilot.yaml")


@pytest.fixture(scope="session")
def rules(protocol: TrialProtocol) -> SafetyRules:
    return protocol.safety
