"""SMART (pcst-smart): a `stage_allocated` event is written to the stage's own REDCap fields
in the stage timepoint's event, once; the option, sealed to the gateway, is opened only
there and stays out of the audit chain; a payload that does not open is dead-lettered."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redcap import Project
from sqlmodel import Session, select

from gateway.app import SPEC as GATEWAY
from gateway.redcap.models import RedcapWrite
from services.core import audit
from services.core.events import Envelope, StageAllocated
from sim.redcap.testing import RunningEmulator, running_emulator
from tailor_cli.natsd import NatsServer
from tests.support.harness import EventTap, eventually, provisioner_bus, served_service
from tests.support.sealed import recipient

PCST = Path("protocols/pcst-smart.yaml").resolve()


@pytest.fixture
def smart_stack(tmp_path: Path, nats_server: NatsServer,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningEmulator, object]]:
    with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PCST.with_suffix("") / "redcap",
                          project_id=105) as redcap:
        monkeypatch.setenv("TAILOR_REDCAP_API_URL", redcap.api_url)
        monkeypatch.setenv("TAILOR_REDCAP_TOKEN", redcap.token)
        monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", secrets.token_urlsafe(24))
        monkeypatch.setenv("TAILOR_REDCAP_SWEEP_INTERVAL_SECONDS", "3600")
        with served_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                            database_url=f"sqlite:///{tmp_path}/gateway.db",
                            protocol_file=PCST) as (_url, app):
            yield redcap, app


def _stage_allocated(record: str, option: str, *, sealed: str | None = None) -> Envelope:
    event = StageAllocated(
        record=record, stage="s2", stage_number="PCST-S2-0003",
        allocated_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        sealed=sealed or recipient("gateway").seal_json(
            {"option": option}, subject=StageAllocated.subject, record=record))
    return Envelope(subject=StageAllocated.subject, producer="randomization", record=record,
                    correlation_id="corr-s2", data=event.model_dump(mode="json"))


async def _publish(nats_url: str, env: Envelope, times: int = 1) -> None:
    bus = provisioner_bus(nats_url, "test-publisher")
    await bus.connect(attempts=10)
    await bus.ensure_streams()
    for n in range(times):
        await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=f"{env.id}-{n}")
    await bus.close()


def _writes(app: object) -> list[RedcapWrite]:
    with Session(app.state.kernel.engine) as session:  # type: ignore[attr-defined]
        return list(session.exec(select(RedcapWrite)))


async def test_a_stage_allocation_lands_in_its_own_fields_once(
        smart_stack: tuple[RunningEmulator, object], nats_server: NatsServer) -> None:
    redcap, app = smart_stack
    redcap.save_form("consent", values={"cons_given": "1"}, record="3001",
                     event="t0_baseline_arm_1")
    await _publish(nats_server.url, _stage_allocated("3001", "no_dose"), times=2)
    await eventually(lambda: [w.status for w in _writes(app)] == ["written"])
    [write] = _writes(app)
    assert (write.kind, write.event) == ("stage_allocation", "week_8")
    project = Project(redcap.api_url, redcap.token)
    [row] = project.export_records(records=["3001"], events=["week_8_arm_1"],
                                   forms=["allocation"])
    assert (row["s2_number"], row["s2_option"]) == ("PCST-S2-0003", "no_dose")
    [baseline] = project.export_records(records=["3001"], events=["t0_baseline_arm_1"],
                                        fields=["record_id", "s2_option", "alloc_number"])
    assert baseline["s2_option"] == "" and baseline["alloc_number"] == ""  # first stage untouched
    with Session(app.state.kernel.engine) as session:  # type: ignore[attr-defined]
        entries = list(session.exec(select(audit.AuditEntry)))
        assert [e.action for e in entries].count("redcap.written") == 1
        assert not any("no_dose" in json.dumps(e.after) for e in entries)
        assert audit.verify(session).ok


async def test_an_option_sealed_to_another_key_is_dead_lettered(
        smart_stack: tuple[RunningEmulator, object], nats_server: NatsServer) -> None:
    _redcap, app = smart_stack
    foreign = recipient("randomization").seal_json(
        {"option": "maintenance"}, subject=StageAllocated.subject, record="3002")
    await _publish(nats_server.url, _stage_allocated("3002", "maintenance", sealed=foreign))
    async with EventTap(nats_server.url, "trial.dlq.gateway-redcap-stage-sync") as tap:
        [letter] = await tap.wait_for(1)
    assert letter.data["record"] == "3002"
    assert "maintenance" not in json.dumps(letter.data)
    assert _writes(app) == []
