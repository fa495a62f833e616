"""content=log: every change is in the project's log, with REDCap's filters."""

from __future__ import annotations

from datetime import UTC, datetime

import redcap

from sim.redcap.testing import SettableClock

from .conftest import BASELINE


def test_creates_updates_deletes_and_exports_are_logged(project: redcap.Project) -> None:
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": 40}])
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": 41}])
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": 41}])
    project.export_records()
    project.delete_records(["1"])
    log = project.export_logging()
    actions = [e["action"] for e in log]
    assert actions[:4] == ["Delete record (API) 1", "Data export (API)",
                           "Update record (API) 1", "Create record (API) 1"]
    assert "dem_age = '41'" in log[2]["details"]
    assert set(log[0]) == {"timestamp", "username", "action", "details", "record"}


def test_log_filters_by_type_record_user_and_time(project: redcap.Project,
                                                  clock: SettableClock) -> None:
    clock.set(datetime(2024, 6, 1, 8, 0, tzinfo=UTC))
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": 40}])
    clock.set(datetime(2024, 6, 1, 9, 0, tzinfo=UTC))
    project.import_records([{"record_id": "2", "redcap_event_name": BASELINE, "dem_age": 50}])
    project.export_records()
    assert [e["record"] for e in project.export_logging(log_type="record_add")] == ["2", "1"]
    assert [e["action"] for e in project.export_logging(log_type="export")] == [
        "Data export (API)"]
    assert [e["record"] for e in project.export_logging(record="1")] == ["1"]
    assert project.export_logging(user="somebody_else") == []
    late = project.export_logging(log_type="record", begin_time=datetime(2024, 6, 1, 8, 30))
    assert [(e["record"], e["timestamp"]) for e in late] == [("2", "2024-06-01 09:00")]
    early = project.export_logging(log_type="record", end_time=datetime(2024, 6, 1, 8, 30))
    assert [e["record"] for e in early] == ["1"]
