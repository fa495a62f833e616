"""Fixtures of the notifications tests: the real PerPAIN protocol and derived policies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.core.protocol import TrialProtocol, load_protocol
from services.core.protocol.notifications import ReminderPolicy
from services.notifications.domain import TimepointSchedule, schedule_timepoints

ROOT = Path(__file__).resolve().parents[3]
BERLIN = ZoneInfo("Europe/Berlin")
CHICAGO = ZoneInfo("America/Chicago")


@pytest.fixture(scope="session")
def protocol() -> TrialProtocol:
    return load_protocol(ROOT / "protocols" / "perpain-pilot.yaml")


@pytest.fixture(scope="session")
def policy(protocol: TrialProtocol) -> ReminderPolicy:
    return protocol.reminders


@pytest.fixture(scope="session")
def schedules(protocol: TrialProtocol) -> list[TimepointSchedule]:
    """A participant allocated on Wednesday 15 January 2025, 14:00 in Berlin."""
    return schedule_timepoints(protocol.timepoints, datetime(2025, 1, 15, 13, 0, tzinfo=UTC),
                               BERLIN)
