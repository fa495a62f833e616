"""Readiness means "can do its job"; the DET secret may come in a header; the DET →
write-back latency is measured."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from gateway.app import SPEC as GATEWAY
from gateway.redcap.models import RedcapTrigger, RedcapWrite
from services.core.events import Allocated, Envelope
from services.core.internal_token import PUBLIC_KEY_FILE
from services.core.runner import ServiceSpec
from tailor_cli.natsd import NatsServer
from tests.integration.gateway_redcap.conftest import Stack, stack  # noqa: F401 (fixture)
from tests.support.harness import eventually, provisioner_bus, running_service

pytestmark = pytest.mark.deploy
SAFETY_LIKE = ServiceSpec(name="safety", migrations=Path("services/safety/migrations"))


async def test_a_gateway_that_requires_redcap_is_not_ready_without_it(
        tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_REDCAP_REQUIRED", "true")
    async with running_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/gw.db") as gw:
        answer = await gw.client.get("/readyz")
        assert answer.status_code == 503
        redcap = answer.json()["checks"]["redcap"]
        assert "TAILOR_REDCAP_API_URL" in redcap and "TAILOR_REDCAP_DET_SECRET" in redcap


async def test_a_service_without_the_public_key_is_not_ready(
        tmp_path: Path, nats_server: NatsServer) -> None:
    async with running_service(SAFETY_LIKE, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/safety.db") as svc:
        (tmp_path / "keys" / PUBLIC_KEY_FILE).unlink()
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"]["internal_token_key"].startswith("missing")


async def test_a_configured_service_is_ready(tmp_path: Path, nats_server: NatsServer) -> None:
    async with running_service(SAFETY_LIKE, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/safety.db") as svc:
        answer = await svc.client.get("/readyz")
        assert answer.status_code == 200, answer.text
        assert answer.json()["checks"]["internal_token_key"] == "ok"
        assert (await svc.client.get("/docs")).status_code == 404  # no docs in a service


def _triggers(running: Stack) -> list[RedcapTrigger]:
    with Session(running.engine) as session:
        return list(session.exec(select(RedcapTrigger)))


async def test_the_det_secret_may_come_in_a_header(stack: Stack) -> None:  # noqa: F811
    form = {"project_id": "101", "record": "3001", "instrument": "consent",
            "redcap_event_name": "t0_baseline_arm_1", "consent_complete": "2"}
    det = f"{stack.gateway_url}/redcap/det"
    async with httpx.AsyncClient() as client:
        wrong = await client.post(det, data=form, headers={"X-Tailor-DET-Secret": "nope"})
        assert wrong.status_code == 403
        assert _triggers(stack) == []
        right = await client.post(det, data=form, headers={"X-Tailor-DET-Secret": stack.secret})
        assert right.status_code == 200, right.text
    assert [t.record for t in _triggers(stack)] == ["3001"]


def _observations() -> float:
    return REGISTRY.get_sample_value("tailor_det_to_writeback_seconds_count") or 0.0


async def test_det_to_writeback_latency_is_observed_for_det_allocations(stack: Stack) -> None:  # noqa: F811
    stack.redcap.save_form("consent", values={"cons_given": "1"}, record="3002",
                           event="t0_baseline_arm_1")  # fires a real DET
    await eventually(lambda: [t.record for t in _triggers(stack)] == ["3002"])
    [trigger] = _triggers(stack)
    before = _observations()
    event = Allocated(record="3002", allocation_number="P-0009", module="EDDT",
                      allocated_at=trigger.received_at)
    env = Envelope(subject=Allocated.subject, producer="randomization", record="3002",
                   correlation_id=trigger.id, data=event.model_dump(mode="json"))
    bus = provisioner_bus(stack.nats_url, "test-publisher")  # publishes as randomization
    await bus.connect(attempts=10)
    await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)
    await bus.close()

    def written() -> bool:
        with Session(stack.engine) as session:
            return [w.status for w in session.exec(select(RedcapWrite))] == ["written"]

    await eventually(written)
    assert _observations() == before + 1
