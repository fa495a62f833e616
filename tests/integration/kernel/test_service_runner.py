"""A service run by the kernel: lifespan, health, metrics, problem+json, audit beacon."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import Session

from gateway.app import SPEC as GATEWAY
from services.core import audit
from tailor_cli.natsd import NatsServer
from tests.support.harness import eventually, running_service

from .test_audit_witness import pair


async def test_health_readiness_and_metrics(tmp_path: Path, nats_server: NatsServer) -> None:
    async with running_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/gw.db") as gw:
        assert (await gw.client.get("/healthz")).json() == {"status": "alive"}
        ready = await gw.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "nats": "ok"}
        await gw.client.get("/api/v1/audit/heads")
        text = (await gw.client.get("/metrics")).text
        assert 'route="/api/v1/audit/heads"' in text
        assert "tailor_outbox_backlog_messages" in text


async def test_unknown_route_is_a_problem_document(tmp_path: Path, nats_server: NatsServer) -> None:
    async with running_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/gw.db") as gw:
        response = await gw.client.get("/no/such/route")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-request-id"]


async def test_readiness_fails_when_nats_is_gone(tmp_path: Path, nats_server: NatsServer) -> None:
    async with running_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/gw.db") as gw:
        nats_server.kill()
        await eventually(lambda: not gw.kernel.bus.connected)
        response = await gw.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["nats"] == "unreachable"
        nats_server.start()
        await eventually(lambda: gw.kernel.bus.connected)


async def test_audit_head_crosses_the_bus_to_the_gateway(tmp_path: Path, nats_server: NatsServer) -> None:
    """Service start is audited; the head goes out through the outbox; the gateway keeps it
    once it has read that entry in the service's chain."""
    async with pair(tmp_path, nats_server) as p:
        async def witnessed() -> list:
            heads = (await p.client.get("/api/v1/audit/heads", headers=p.monitor)).json()
            return [h for h in heads if h["service"] == "allocation"]

        def chain() -> audit.ChainReport:
            with Session(p.service.kernel.engine) as session:
                return audit.verify(session)

        async def current() -> bool:  # the chain grows too: it witnesses the gateway's heads
            found = await witnessed()
            report = await asyncio.to_thread(chain)
            return bool(found) and (found[0]["length"], found[0]["head_hash"]) == (
                report.length, report.head_hash)

        await eventually(current)
        assert (await witnessed())[0]["length"] >= 1
