"""Limits and hygiene at the edge: per-key rate limits (429 + Retry-After), bounded
bodies, strict JSON, security headers on every answer, CORS only when configured."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from gateway.auth.key_repository import create_key
from gateway.security.hygiene import SECURITY_HEADERS
from services.core.db import unit_of_work
from tailor_cli.natsd import NatsServer

from .support import Edge, gateway_app, gateway_settings, serving

ORIGIN = "https://monitor.example.org"


@dataclass
class Strict:
    """A second gateway in front of the same services: tight limits, CORS for one origin."""

    url: str
    app: FastAPI
    http: httpx.Client

    def key(self, role: str) -> dict[str, str]:
        with unit_of_work(self.app.state.kernel.engine) as session:
            token = create_key(session, name=f"strict {role}", role=role).token
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def strict(edge: Edge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    home = tmp_path_factory.mktemp("strict")
    (home / "keys").mkdir()
    for name in ("internal-token.key", "internal-token.pub"):  # the services trust this pair
        (home / "keys" / name).write_bytes((edge.home / "keys" / name).read_bytes())
    nats = NatsServer(store_dir=home / "nats").start()
    settings = gateway_settings(edge.service_urls, edge.idp, rate_limit_per_second=0.2,
                                rate_limit_burst=3, max_body_bytes=2048, max_upload_bytes=8192,
                                cors_origins=[ORIGIN])
    app = gateway_app(home, nats.url, settings, "gateway.db")
    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            yield Strict(url, app, http)
    finally:
        nats.kill()


def test_a_key_over_its_rate_is_told_when_to_retry(strict: Strict) -> None:
    monitor, other = strict.key("monitor"), strict.key("monitor")
    answers = [strict.http.get("/api/v1/audit/verify", headers=monitor) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.headers["content-type"] == "application/problem+json"
    assert int(limited.headers["retry-after"]) >= 1
    assert strict.http.get("/api/v1/audit/verify", headers=other).status_code == 200  # per key


def test_refused_credentials_are_limited_per_address(strict: Strict) -> None:
    bad = {"Authorization": "Bearer tlr_000000000000_" + "x" * 43}
    statuses = [strict.http.get("/api/v1/audit", headers=bad).status_code for _ in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429


def test_a_body_over_the_limit_is_refused_before_it_is_read(strict: Strict) -> None:
    admin = strict.key("admin")
    big = b'{"name": "' + b"x" * 4000 + b'", "role": "monitor"}'
    declared = strict.http.post("/api/v1/keys", headers={**admin, "content-type": "application/json"},
                                content=big)
    assert declared.status_code == 413 and declared.json()["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield from (big[i:i + 500] for i in range(0, len(big), 500))

    streamed = strict.http.post("/api/v1/keys", headers={**admin, "content-type": "application/json"},
                                content=chunks())
    assert streamed.status_code == 413


def test_a_csv_upload_may_be_larger_than_json(strict: Strict) -> None:
    statistician = strict.key("statistician")
    csv = "stratum,seq,block,block_length,module,arm\n" + "DYS,1,1,3,PERT,personalized\n" * 120
    assert 2048 < len(csv) < 8192
    upload = strict.http.post("/api/v1/randomization/v1/lists/import", content=csv,
                              headers={**statistician, "content-type": "text/csv"})
    assert upload.status_code not in (413, 415, 401, 403)
    too_big = strict.http.post("/api/v1/randomization/v1/lists/import", content=csv * 3,
                               headers={**statistician, "content-type": "text/csv"})
    assert too_big.status_code == 413


def test_a_streamed_upload_over_the_limit_is_refused(strict: Strict) -> None:
    statistician = strict.key("statistician")
    csv = ("stratum,seq,block,block_length,module,arm\n" + "DYS,1,1,3,PERT,personalized\n" * 400)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams through
        data = csv.encode()
        yield from (data[i:i + 1000] for i in range(0, len(data), 1000))

    refused = strict.http.post("/api/v1/randomization/v1/lists/import", content=chunks(),
                               headers={**statistician, "content-type": "text/csv"})
    assert refused.status_code == 413 and refused.json()["field"] == "body"


def test_only_the_upload_route_takes_a_large_csv(strict: Strict) -> None:
    admin = strict.key("admin")
    csv = "name,role\n" + "a,monitor\n" * 600  # over the JSON limit, under the upload limit
    refused = strict.http.post("/api/v1/keys", content=csv,
                               headers={**admin, "content-type": "text/csv"})
    assert refused.status_code == 413


@pytest.mark.parametrize("media_type", ["text/csv", "application/x-www-form-urlencoded"])
def test_unauthenticated_routes_read_only_a_small_body(edge: Edge, media_type: str) -> None:
    big = b"record=1&" + b"x" * (70 * 1024)  # under the default JSON and upload limits
    for path in ("/redcap/det?secret=wrong", "/api/v1/notifications/v1/sms/callbacks"):
        refused = edge.call("POST", path, content=big, headers={"content-type": media_type})
        assert refused.status_code == 413, (path, refused.text)

        def chunks() -> Iterator[bytes]:
            yield from (big[i:i + 4096] for i in range(0, len(big), 4096))

        streamed = edge.call("POST", path, content=chunks(), headers={"content-type": media_type})
        assert streamed.status_code == 413


def test_an_unauthenticated_body_is_refused_without_reading_it_all(edge: Edge) -> None:
    """Straight at the ASGI app: a 20 MiB CSV body to the DET is abandoned after 64 KiB."""
    chunk, total = 8192, 20 * 1024 * 1024
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        read += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": read < total}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/redcap/det", "raw_path": b"/redcap/det",
             "query_string": b"secret=wrong", "root_path": "", "client": ("10.0.0.9", 4000),
             "server": ("testserver", 80), "headers": [(b"content-type", b"text/csv")]}
    asyncio.run(edge.gateway(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert read <= 64 * 1024 + chunk  # the rest was never read


@pytest.mark.parametrize(("body", "media_type", "status", "field"), [
    (b'{"name": "a", "name": "b", "role": "monitor"}', "application/json", 400, "body"),
    (b'{"name": "a", "role": "monitor", "expires_in_days": NaN}', "application/json", 400, "body"),
    (b'{"name": "\xff\xfe", "role": "monitor"}', "application/json", 400, "body"),
    (b'{"name": "a", "role": ', "application/json", 400, "body"),
    (b'{"name": "a", "role": "monitor", "admin": true}', "application/json", 422, "admin"),
    (b"name=a&role=monitor", "text/plain", 415, "Content-Type"),
])
def test_json_must_be_strict(edge: Edge, body: bytes, media_type: str, status: int, field: str) -> None:
    before = len(edge.call("GET", "/api/v1/keys", "admin").json())
    response = edge.call("POST", "/api/v1/keys", "admin", content=body,
                         headers={"content-type": media_type})
    assert response.status_code == status, response.text
    assert field in response.text
    assert len(edge.call("GET", "/api/v1/keys", "admin").json()) == before  # nothing changed


@pytest.mark.parametrize(("path", "role", "status"), [
    ("/healthz", None, 200), ("/api/v1/audit", None, 401), ("/api/v1/audit", "coordinator", 403),
    ("/api/v1/nowhere", "monitor", 404), ("/api/v1/randomization/v1/allocations/GW-404", "coordinator", 404),
    ("/api/v1/audit?since=yesterday", "monitor", 422),
])
def test_every_answer_carries_the_security_headers(edge: Edge, path: str, role: str | None,
                                                   status: int) -> None:
    response = edge.call("GET", path, role)
    assert response.status_code == status
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert response.headers["x-request-id"]
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in response.text and "File \"" not in response.text


def test_cors_is_off_unless_configured(edge: Edge, strict: Strict) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    off = edge.http.options(f"{edge.gateway_url}/api/v1/audit", headers=preflight)
    assert "access-control-allow-origin" not in off.headers
    plain = edge.call("GET", "/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in plain.headers

    on = strict.http.options("/api/v1/audit", headers=preflight)
    assert on.status_code == 200 and on.headers["access-control-allow-origin"] == ORIGIN
    other = strict.http.options("/api/v1/audit", headers={**preflight, "Origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    answer = strict.http.get("/healthz", headers={"Origin": ORIGIN})
    assert answer.headers["access-control-allow-origin"] == ORIGIN
