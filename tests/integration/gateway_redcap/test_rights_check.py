"""The blinding check of REDCap user rights: `tailor redcap check-rights` and the gateway's
start-up check read users, roles and form rights through the API (PyCap against the
emulator) and name every user or role who could see both the allocation and baseline MPI-D."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redcap
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from gateway.app import SPEC as GATEWAY
from gateway.redcap.client import RedcapClient
from services.core.protocol import load_protocol
from sim.redcap.testing import PERPAIN_REDCAP, RunningEmulator, running_emulator
from tailor_cli.main import app as tailor
from tailor_cli.natsd import NatsServer
from tests.support.harness import served_service

PROTOCOL = load_protocol(Path("protocols/perpain-pilot.yaml"))
LEAKY_ROLE = {"role_label": "Study nurse", "forms": {"allocation": 2, "mpid": 2}}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP,
                          project_id=101) as rc:
        yield rc


def offenders(rc: RunningEmulator) -> list[str]:
    client = RedcapClient(rc.api_url, rc.token)
    return [o.describe() for o in client.rights_offenders(
        PROTOCOL.redcap, "tailor", module_forms=PROTOCOL.module_forms)]


def leaky_role(project: redcap.Project) -> str:
    project.import_user_roles([LEAKY_ROLE])
    return next(r["unique_role_name"] for r in project.export_user_roles()
                if r["role_label"] == "Study nurse")


def test_the_shipped_project_passes(emulator: RunningEmulator) -> None:
    project = redcap.Project(emulator.api_url, emulator.token)
    assert len(project.export_user_roles()) == 3  # the shipped roles are in the project
    assert offenders(emulator) == []


def test_a_role_that_sees_both_is_named_and_so_are_its_users(emulator: RunningEmulator) -> None:
    project = redcap.Project(emulator.api_url, emulator.token)
    role = leaky_role(project)
    project.import_users([{"username": "nurse_anna"}])
    project.import_user_role_assignment([{"username": "nurse_anna", "unique_role_name": role}])
    named = offenders(emulator)
    assert named == [
        f"role {role} (Study nurse): sees the allocation (allocation, diary) and baseline MPI-D (mpid)",
        f"user nurse_anna ({role}): sees the allocation (allocation, diary) and baseline MPI-D (mpid)"]


def test_a_role_that_sees_the_diary_answers_and_mpid_is_named(emulator: RunningEmulator) -> None:
    """Only the diary module's participants have diary answers: with MPI-D (the cluster)
    they give the arm like the allocation does."""
    project = redcap.Project(emulator.api_url, emulator.token)
    forms = {f["instrument_name"]: 0 for f in project.export_instruments()}
    project.import_user_roles([{"role_label": "Diary reviewer",
                                "forms": {**forms, "diary": 2, "mpid": 1}}])
    role = next(r["unique_role_name"] for r in project.export_user_roles()
                if r["role_label"] == "Diary reviewer")
    assert offenders(emulator) == [
        f"role {role} (Diary reviewer): sees the allocation (diary) and baseline MPI-D (mpid)"]


def test_export_rights_count_and_a_user_who_may_edit_rights_is_named(
        emulator: RunningEmulator) -> None:
    project = redcap.Project(emulator.api_url, emulator.token)
    forms = {f["instrument_name"]: 0 for f in project.export_instruments()}
    project.import_users([
        {"username": "exporter", "forms": forms,
         "forms_export": {**forms, "allocation": 1, "mpid": 2}},
        {"username": "pi", "user_rights": 1, "forms": forms}])
    named = offenders(emulator)
    assert [n.split(":")[0] for n in named] == ["user exporter", "user pi"]
    assert "may change user rights" in named[1]


def test_the_cli_exits_1_naming_the_offender_and_0_when_fixed(
        emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_REDCAP_API_URL", emulator.api_url)
    monkeypatch.setenv("TAILOR_REDCAP_TOKEN", emulator.token)
    runner = CliRunner()
    ok = runner.invoke(tailor, ["redcap", "check-rights"])
    assert ok.exit_code == 0, ok.output
    project = redcap.Project(emulator.api_url, emulator.token)
    role = leaky_role(project)
    bad = runner.invoke(tailor, ["redcap", "check-rights"])
    assert bad.exit_code == 1 and f"role {role} (Study nurse)" in bad.output
    project.delete_user_roles([role])
    assert runner.invoke(tailor, ["redcap", "check-rights"]).exit_code == 0


def _readiness_once_checked(emulator: RunningEmulator, tmp_path: Path, nats_url: str,
                            monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict]:
    monkeypatch.setenv("TAILOR_REDCAP_API_URL", emulator.api_url)
    monkeypatch.setenv("TAILOR_REDCAP_TOKEN", emulator.token)
    monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", "s" * 24)
    with served_service(GATEWAY, home=tmp_path, nats_url=nats_url,
                        database_url=f"sqlite:///{tmp_path}/gateway.db") as (url, _):
        deadline = time.monotonic() + 30
        while True:  # the first check runs in the background: wait for its verdict
            response = httpx.get(f"{url}/readyz")
            body = response.json()
            if body["checks"].get("redcap_rights", "ok") != "ok" or time.monotonic() > deadline:
                return response.status_code, body
            time.sleep(0.1)


def test_the_gateway_is_not_ready_while_an_offender_exists(
        emulator: RunningEmulator, tmp_path: Path, nats_server: NatsServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    role = leaky_role(redcap.Project(emulator.api_url, emulator.token))
    status, body = _readiness_once_checked(emulator, tmp_path, nats_server.url, monkeypatch)
    assert status == 503
    assert f"role {role} (Study nurse)" in body["checks"]["redcap_rights"]
    assert REGISTRY.get_sample_value("tailor_redcap_rights_offenders") == 1


def test_a_check_redcap_refuses_is_not_a_pass(
        emulator: RunningEmulator, tmp_path: Path, nats_server: NatsServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tailor's API user without the User Rights privilege cannot read users and roles."""
    redcap.Project(emulator.api_url, emulator.token).import_users(
        [{"username": "tailor", "user_rights": 0}])
    status, body = _readiness_once_checked(emulator, tmp_path, nats_server.url, monkeypatch)
    assert status == 503
    assert body["checks"]["redcap_rights"].startswith("REDCap user rights could not be checked")
    assert "User Rights privileges" in body["checks"]["redcap_rights"]
