"""Routing to the services: the caller's identity travels as a token the gateway signs
(never one the client sends), the request id goes along, only table routes are forwarded,
and a service that is down or silent is a 503 naming it, never a hang."""

from __future__ import annotations

import asyncio
import http.client
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
import pytest
from fastapi import FastAPI

from gateway.auth.key_repository import create_key
from services.core.db import unit_of_work
from services.core.internal_token import HEADER, Caller, InternalTokenSigner, load_private_key
from services.core.roles import Role
from tailor_cli.natsd import NatsServer

from .support import Edge, Trial, adverse_event, gateway_app, gateway_settings, serving


async def _silent(scope: dict, receive: object, send: object) -> None:
    """A service that accepts the request and never answers."""
    await asyncio.sleep(3600)


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@dataclass
class Outage:
    http: httpx.Client
    app: FastAPI

    def headers(self, role: str) -> dict[str, str]:
        with unit_of_work(self.app.state.kernel.engine) as session:
            token = create_key(session, name=f"outage {role}", role=role).token
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def outage(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """A gateway for which safety is down (nothing listens) and notifications is silent."""
    home = tmp_path_factory.mktemp("outage")
    (home / "keys").mkdir()
    for name in ("internal-token.key", "internal-token.pub"):
        (home / "keys" / name).write_bytes((edge.home / "keys" / name).read_bytes())
    nats = NatsServer(store_dir=home / "nats").start()
    urls = {**edge.service_urls, "safety": _closed_port()}
    urls.pop("notifications")
    settings = gateway_settings(urls, edge.idp, proxy_connect_timeout_seconds=0.5,
                                proxy_timeout_seconds=1.0)
    app = gateway_app(home, nats.url, settings, "gateway.db",
                      transports={"notifications": httpx.ASGITransport(app=_silent)})
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield Outage(client, app)
    finally:
        nats.kill()


def test_a_service_that_is_down_is_a_503_naming_it(outage: Outage) -> None:
    response = outage.http.get("/api/v1/safety/v1/obligations", headers=outage.headers("safety_officer"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["service"] == "safety" and "cannot be reached" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


def test_a_service_that_does_not_answer_is_a_503_not_a_hang(outage: Outage) -> None:
    response = outage.http.get("/api/v1/notifications/v1/tasks", headers=outage.headers("coordinator"))
    assert response.status_code == 503
    assert response.json()["service"] == "notifications"
    assert "did not answer in time" in response.json()["detail"]


def test_the_audit_api_names_the_chain_it_cannot_read(outage: Outage) -> None:
    monitor = outage.headers("monitor")
    listing = outage.http.get("/api/v1/audit", headers=monitor)
    assert listing.status_code == 503 and listing.json()["service"] in {"safety", "notifications"}
    one = outage.http.get("/api/v1/audit", headers=monitor, params={"service": "randomization"})
    assert one.status_code == 200 and {e["service"] for e in one.json()["entries"]} == {"randomization"}
    verdicts = outage.http.get("/api/v1/audit/verify", headers=monitor).json()
    by_service = {v["service"]: v for v in verdicts["services"]}
    assert verdicts["ok"] is False
    assert not by_service["safety"]["reachable"] and "unreachable" in by_service["safety"]["problem"]
    # This second gateway's own chain is not the one the (shared) services witness, so only
    # its readability is asserted here; tests/integration/kernel/test_audit_witness.py
    # verifies a gateway chain against its witnesses.
    assert by_service["randomization"]["ok"] and by_service["gateway"]["reachable"]
    health = outage.http.get("/api/v1/ops/health", headers=outage.headers("ops")).json()
    assert {s["service"]: s["ready"] for s in health["services"]} == {
        "gateway": True, "allocation": True, "randomization": True, "notifications": False,
        "safety": False, "reports": True}
    document = outage.http.get("/openapi.json").json()
    assert set(document["x-tailor-unavailable"]) == {"notifications", "safety"}


def test_the_service_gets_the_gateways_token_never_the_clients(edge: Edge, trial: Trial) -> None:
    record = trial.records[0]
    private = load_private_key((edge.home / "keys" / "internal-token.key").read_bytes())
    smuggled = InternalTokenSigner(private).sign(Caller(subject="mallory", role=Role.STUDY_MANAGER),
                                                 audience="randomization")
    path = f"/api/v1/randomization/v1/allocations/{record}"
    blinded = edge.call("GET", path, Role.COORDINATOR, headers={HEADER: smuggled})
    assert blinded.status_code == 200 and "arm" not in blinded.json()
    assert edge.call("GET", path, headers={HEADER: smuggled}).status_code == 401


def test_the_gateways_request_id_reaches_the_service(edge: Edge, trial: Trial) -> None:
    chosen = f"gw-test-{uuid.uuid4().hex[:12]}"
    reported = edge.call("POST", "/api/v1/safety/v1/adverse-events", Role.COORDINATOR,
                         headers={"X-Request-ID": chosen}, json=adverse_event(trial.records[2]))
    assert reported.status_code == 201, reported.text
    [request_id] = reported.headers.get_list("x-request-id")
    assert request_id != chosen  # the correlation id is the gateway's, never the caller's
    entries = edge.call("GET", "/api/v1/audit", Role.MONITOR,
                        params={"service": "safety", "limit": 1000}).json()["entries"]
    assert any(e["correlation_id"] == request_id for e in entries)
    assert not any(e["correlation_id"] == chosen for e in entries)


@pytest.mark.parametrize("path", [
    "/api/v1/allocation/metrics", "/api/v1/allocation/healthz", "/api/v1/randomization/openapi.json",
    "/api/v1/safety/docs", "/api/v1/randomization/v1/allocations", "/api/v1/nowhere/v1/audit",
    "/docs", "/v1/audit",
])
def test_what_the_table_does_not_name_is_not_forwarded(edge: Edge, path: str) -> None:
    for role in (None, Role.OPS, Role.STUDY_MANAGER, Role.MONITOR):
        assert edge.call("GET", path, role).status_code == 404


def _raw_get(url: str, path: str, headers: dict[str, str]) -> int:
    """Sent byte for byte: a client library would resolve the dot segments itself."""
    parts = urlparse(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.parametrize("path", [
    "/api/v1/randomization/v1/allocations/../allocations/unblinded",
    "/api/v1/randomization/v1/allocations/%2e%2e/allocations/unblinded",
    "/api/v1/randomization/v1/allocations/GW-001/..",
    "/api/v1/randomization/v1//allocations/GW-001",
])
def test_dot_segments_cannot_reach_another_route(edge: Edge, path: str) -> None:
    assert _raw_get(edge.gateway_url, path, edge.headers(Role.COORDINATOR)) == 404


def test_gateway_metrics_are_for_ops(edge: Edge) -> None:
    assert edge.call("GET", "/metrics").status_code == 401
    assert edge.call("GET", "/metrics", Role.MONITOR).status_code == 403
    metrics = edge.call("GET", "/metrics", Role.OPS)
    assert metrics.status_code == 200 and "tailor_http_requests_total" in metrics.text
