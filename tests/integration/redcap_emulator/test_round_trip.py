"""Round trip: every protocol's REDCap project (and a project from REDCap's own XML with
surveys, roles and DAGs) exported from the emulator as project XML and re-imported into a
fresh emulator is the same project: design, roles, DAGs, surveys and data."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redcap

from sim.redcap.testing import RunningEmulator, running_emulator

from .conftest import SUPER_TOKEN, StatusLog
from .test_project_xml import create_project
from .test_users_and_rights import CLINIC_XML

PROTOCOL_PROJECTS = sorted(p.parent for p in Path("protocols").glob("*/redcap/data_dictionary.csv"))


def _same_project(a: redcap.Project, b: redcap.Project) -> None:
    assert b.export_metadata() == a.export_metadata()
    assert b.export_instruments() == a.export_instruments()
    assert b.export_repeating_instruments_events() == a.export_repeating_instruments_events()
    if a.is_longitudinal:
        assert b.export_arms() == a.export_arms()
        assert b.export_events() == a.export_events()
        assert b.export_instrument_event_mappings() == a.export_instrument_event_mappings()
    assert b.export_user_roles() == a.export_user_roles()
    assert b.export_dags() == a.export_dags()
    info_a, info_b = a.export_project_info(), b.export_project_info()
    # (purpose comes from the creation request itself, not from the XML)
    for key in ("surveys_enabled", "record_autonumbering_enabled", "is_longitudinal",
                "has_repeating_instruments_or_events"):
        assert info_b[key] == info_a[key], key
    assert b.export_records(export_data_access_groups=bool(a.export_dags())) == (
        a.export_records(export_data_access_groups=bool(a.export_dags())))


def _xml(project: redcap.Project) -> str:
    return str(project._call_api(project._initialize_payload("project_xml"), "str"))


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path / "fresh.sqlite", super_token=SUPER_TOKEN) as rc:
        yield rc


@pytest.mark.parametrize("folder", PROTOCOL_PROJECTS, ids=lambda p: p.parent.name)
def test_each_protocols_project_survives_export_and_reimport(
        folder: Path, emulator: RunningEmulator, fresh: RunningEmulator) -> None:
    token = secrets.token_hex(16).upper()
    emulator.emulator.create_from_folder(folder, token=token)
    original = redcap.Project(emulator.api_url, token)
    rows = [{"record_id": "1", "redcap_event_name": original.export_events()[0][
        "unique_event_name"]} if original.is_longitudinal else {"record_id": "1"}]
    original.import_records(rows)
    copy_token = create_project(fresh.api_url, "copy", _xml(original), StatusLog())
    _same_project(original, redcap.Project(fresh.api_url, copy_token))


def test_a_project_with_surveys_roles_and_dags_survives_the_round_trip(
        emulator: RunningEmulator, fresh: RunningEmulator) -> None:
    original = redcap.Project(emulator.api_url,
                              create_project(emulator.api_url, "Clinic", CLINIC_XML, StatusLog()))
    xml = _xml(original)
    assert "redcap_survey_identifier" in xml and 'unique_role_name="U-NURSE00001"' in xml
    copy = redcap.Project(fresh.api_url, create_project(fresh.api_url, "Clinic", xml, StatusLog()))
    _same_project(original, copy)
    assert copy.export_survey_link(record="1", instrument="feedback").startswith(fresh.base_url)
