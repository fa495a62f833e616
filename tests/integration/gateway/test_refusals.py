"""Refused credentials: X-Forwarded-For believed only from a configured proxy; refusals
limited per address and per key id; the audit chain gets a bounded summary of them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import col, select

from gateway.auth.rate_limit import RateLimiter
from gateway.security.client import client_address, networks
from gateway.security.refusals import AUDIT_BURST, RefusalSummary
from services.core import audit
from services.core.roles import Role
from services.core.runner import server_config
from tailor_cli.natsd import NatsServer

from .support import Edge, gateway_app, gateway_settings, serving

GUESS = {"Authorization": "Bearer tlr_000000000000_" + "x" * 43}


def _gateway(edge: Edge, tmp: pytest.TempPathFactory, name: str,
             **settings: object) -> Iterator[httpx.Client]:
    home = tmp.mktemp(name)
    (home / "keys").mkdir()
    for key in ("internal-token.key", "internal-token.pub"):
        (home / "keys" / key).write_bytes((edge.home / "keys" / key).read_bytes())
    nats = NatsServer(store_dir=home / "nats").start()
    app = gateway_app(home, nats.url, gateway_settings(
        edge.service_urls, edge.idp, rate_limit_per_second=0.01, rate_limit_burst=3, **settings),
        "gateway.db")
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield http
    finally:
        nats.kill()


@pytest.fixture(scope="module")
def direct(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    yield from _gateway(edge, tmp_path_factory, "direct")


@pytest.fixture(scope="module")
def behind_proxy(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    yield from _gateway(edge, tmp_path_factory, "proxied", trusted_proxies=["127.0.0.1/32"])


def test_the_server_never_rewrites_the_client_address() -> None:
    assert server_config(object()).proxy_headers is False  # type: ignore[arg-type]


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() -> None:
    scope = {"client": ("203.0.113.9", 5000),
             "headers": [(b"x-forwarded-for", b"198.51.100.1, 10.0.0.2")]}
    assert client_address(scope, ()) == "203.0.113.9"
    assert client_address(scope, networks(["10.0.0.0/8"])) == "203.0.113.9"
    proxied = {**scope, "client": ("10.0.0.3", 5000)}
    # The right-most hop that is not a proxy of ours: the one our proxy saw.
    assert client_address(proxied, networks(["10.0.0.0/8"])) == "198.51.100.1"
    assert client_address({**proxied, "headers": [(b"x-forwarded-for", b"junk")]},
                          networks(["10.0.0.0/8"])) == "10.0.0.3"


def test_a_made_up_forwarded_for_does_not_escape_the_per_address_limit(
        direct: httpx.Client) -> None:
    statuses = [direct.get("/api/v1/audit", headers={**GUESS, "X-Forwarded-For": f"192.0.2.{i}"})
                .status_code for i in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]


def test_behind_a_trusted_proxy_each_client_has_its_own_limit(behind_proxy: httpx.Client) -> None:
    for client in ("192.0.2.10", "192.0.2.11"):  # (no key id: only the address limits)
        statuses = [behind_proxy.get("/api/v1/audit", headers={
            "Authorization": "Bearer not.a.token", "X-Forwarded-For": client})
                    .status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429], client


def test_refusals_of_one_key_are_limited_whatever_the_address(edge: Edge,
                                                             behind_proxy: httpx.Client) -> None:
    key = "Bearer tlr_000000000001_" + "y" * 43  # one key id, from ever new addresses
    statuses = [behind_proxy.get("/api/v1/audit", headers={
        "Authorization": key, "X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]


def test_refusals_of_a_known_key_are_summarised_in_the_audit(edge: Edge) -> None:
    key_id, token = edge.issue(Role.MONITOR, "a key that leaks, then is revoked")
    edge.revoke(key_id)
    now = [0.0]
    runtime = edge.gateway.state.gateway
    runtime.refusals = RefusalSummary(limiter=RateLimiter(rate=1 / 60, burst=AUDIT_BURST,
                                                          clock=lambda: now[0]))
    for _ in range(40):
        assert edge.call("GET", "/api/v1/audit/verify",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 401

    def refusals() -> list[dict]:
        with edge.session() as session:
            rows = session.exec(select(audit.AuditEntry).where(
                col(audit.AuditEntry.action) == "auth.refused",
                col(audit.AuditEntry.entity_id) == key_id)).all()
        return [json.loads(r.after) for r in rows]

    assert len(refusals()) == AUDIT_BURST  # not forty
    now[0] += 60
    assert edge.call("GET", "/api/v1/audit/verify",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
    last = refusals()[-1]
    assert len(refusals()) == AUDIT_BURST + 1
    assert last["refusals_not_recorded_since_last"] == 40 - AUDIT_BURST
