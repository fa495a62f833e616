"""Builders shared by the safety domain tests (a module name no other test folder uses)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.safety.domain import AdverseEvent, parse_adverse_event

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
AWARE = datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


def criteria(**true: bool) -> dict[str, bool]:
    base = dict.fromkeys(("death", "life_threatening", "hospitalisation", "disability",
                          "congenital_anomaly", "medically_important"), False)
    base.update(true)
    return base


def event_data(**overrides: Any) -> dict[str, Any]:
    """A valid, non-serious API body; override any field."""
    data: dict[str, Any] = {
        "participant": "P-001",
        "onset_date": "2025-03-09",
        "awareness_time": AWARE.isoformat(),
        "verbatim_term": "panic attack after session",
        "severity": "moderate",
        "grade": None,
        "seriousness": criteria(),
        "relatedness": "possibly",
        "expected": None,
        "outcome": "recovered",
        "action_taken": "none",
        "reporter": "Dr. Example",
    }
    data.update(overrides)
    return data


def make_event(**overrides: Any) -> AdverseEvent:
    return parse_adverse_event(event_data(**overrides), now=NOW)


def serious_event(**overrides: Any) -> AdverseEvent:
    """Serious (hospitalisation), related, unexpected: a SUSAR under PerPAIN's rules."""
    return make_event(**{"seriousness": criteria(hospitalisation=True), "severity": "severe",
                         **overrides})
