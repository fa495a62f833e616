"""Fault injection on /api/: REDCap answering 500s, or answering late."""

from __future__ import annotations

import time

import pytest
import redcap
import requests
from redcap import RedcapError

from sim.redcap.testing import RunningEmulator

from .conftest import BASELINE, PerpainProject, error_message


@pytest.fixture(autouse=True)
def no_fault_left_behind(emulator: RunningEmulator):  # type: ignore[no-untyped-def]
    yield
    emulator.clear_fault()


def test_error_fault_answers_500_for_the_next_calls_then_recovers(
        emulator: RunningEmulator, project: redcap.Project, perpain: PerpainProject) -> None:
    emulator.set_fault("error", status=500, remaining=2)
    for _ in range(2):
        with pytest.raises(RedcapError) as err:
            project.export_records()
        assert "emulated fault" in error_message(err)
        assert perpain.statuses.last == 500
    assert project.export_records() == []
    assert perpain.statuses.last == 200


def test_fault_can_target_one_content(emulator: RunningEmulator, project: redcap.Project,
                                      perpain: PerpainProject) -> None:
    emulator.set_fault("error", status=503, contents=["record"])
    assert project.export_version() is not None
    with pytest.raises(RedcapError):
        project.import_records([{"record_id": "1", "redcap_event_name": BASELINE}])
    assert perpain.statuses.last == 503
    emulator.clear_fault()
    assert project.export_records() == []  # the refused import changed nothing


def test_a_stalled_import_times_out_for_the_client_but_is_applied_afterwards(
        emulator: RunningEmulator, perpain: PerpainProject) -> None:
    emulator.set_fault("stall", seconds=0.6, remaining=1, contents=["record"])
    impatient = redcap.Project(perpain.api_url, perpain.token, timeout=0.1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient.import_records([{"record_id": "1", "redcap_event_name": BASELINE,
                                   "dem_age": 33}])
    project = perpain.project()
    rows: list[dict[str, str]] = []
    for _ in range(100):  # the stalled call finishes on its own; wait for it, bounded
        rows = project.export_records(fields=["dem_age"])
        if rows:
            break
        time.sleep(0.05)
    assert [r["dem_age"] for r in rows] == ["33"]
