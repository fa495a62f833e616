"""Run a service in-process for integration tests: its real lifespan (migrations, bus,
consumers, relay), a real nats-server and database, and callers with signed tokens."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from services.core.bus import Bus
from services.core.bus_contract import PROVISIONER
from services.core.events import Envelope
from services.core.internal_token import (
    HEADER,
    Caller,
    InternalTokenSigner,
    ensure_keypair,
    load_private_key,
    route_of,
)
from services.core.roles import ONWARD_ROUTES, Role
from services.core.runner import Kernel, ServiceSpec, build_app
from services.core.settings import ServiceSettings, Settings
from tailor_cli.natsd import server_at

PROTOCOL = Path("protocols/perpain-pilot.yaml")


def test_settings(home: Path, nats_url: str, **overrides: object) -> Settings:
    return Settings(**{"home": home, "nats_url": nats_url, "protocol_file": PROTOCOL,  # type: ignore[arg-type]
                       "log_json": False, "log_level": "warning", "outbox_poll_seconds": 0.1,
                       **overrides})


# Internal tokens are good for one request (method, path, jti): a test names the caller in
# this header and the client signs a fresh token for each request it sends, as the gateway does.
TEST_CALLER = "x-test-caller"


def token_headers(home: Path, service: str | list[str], role: Role | str,
                  subject: str = "tester") -> dict[str, str]:
    return {TEST_CALLER: json.dumps({"home": str(home), "audience": service,
                                     "role": str(Role(role)), "subject": subject})}


def sign_for_request(request: httpx.Request) -> None:
    """Replace the test's caller header with a token bound to this request."""
    marker = request.headers.get(TEST_CALLER)
    if marker is None:
        return
    del request.headers[TEST_CALLER]
    wanted = json.loads(marker)
    audience = wanted["audience"]
    service = audience if isinstance(audience, str) else audience[0]
    keys = ensure_keypair(Path(wanted["home"]) / "keys")
    signer = InternalTokenSigner(load_private_key(keys.private_key.read_bytes()))
    path = request.url.path
    routes = {service: route_of(request.method, path),
              **ONWARD_ROUTES.get(f"/api/v1/{service}{path}", {})}
    request.headers[HEADER] = signer.sign(
        Caller(subject=wanted["subject"], role=Role(wanted["role"])), audience=audience,
        routes=routes)


async def _sign_for_request(request: httpx.Request) -> None:
    sign_for_request(request)


def provisioner_bus(nats_url: str, name: str = PROVISIONER, **options: object) -> Bus:
    """A bus client with the provisioner's rights (every subject), for test probes that
    publish as any service, read any subject or make their own consumers."""
    server = server_at(nats_url)
    return Bus(nats_url, name, credentials=server.credentials() if server else None,
               tls=server.tls_files if server else None, **options)  # type: ignore[arg-type]


@dataclass
class RunningService:
    app: FastAPI
    client: httpx.AsyncClient
    home: Path
    name: str

    @property
    def kernel(self) -> Kernel:
        return self.app.state.kernel  # type: ignore[no-any-return]

    @property
    def deps(self) -> Any:
        """What the service's bootstrap built (its typed dependencies)."""
        return self.app.state.deps

    def as_role(self, role: Role | str, subject: str = "tester") -> dict[str, str]:
        return token_headers(self.home, self.name, role, subject)


@asynccontextmanager
async def running_service(spec: ServiceSpec[Any], *, home: Path, nats_url: str, database_url: str,
                          overrides: dict[str, Any] | None = None,
                          **settings: object) -> AsyncIterator[RunningService]:
    """`overrides` replaces fields of the dependencies the service's bootstrap builds (a
    clock the test moves, say)."""
    ensure_keypair(home / "keys")
    app = build_app(spec, config=test_settings(home, nats_url, **settings),
                    own=ServiceSettings(name=spec.name, database_url=database_url),
                    overrides=overrides)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{spec.name}",
                                     event_hooks={"request": [_sign_for_request]}) as client:
            yield RunningService(app, client, home, spec.name)


async def eventually(predicate: Callable[[], object], timeout: float = 20.0,
                     interval: float = 0.05) -> None:
    """Poll until `predicate()` is truthy (it may be sync or return an awaitable)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(interval)


@contextmanager
def served_service(spec: ServiceSpec[Any], *, home: Path, nats_url: str, database_url: str,
                   overrides: dict[str, Any] | None = None,
                   **settings: object) -> Iterator[tuple[str, FastAPI]]:
    """The service with its real lifespan, listening on a free port (uvicorn in a thread):
    for peers that must reach it over HTTP, like REDCap firing a Data Entry Trigger."""
    ensure_keypair(home / "keys")
    app = build_app(spec, config=test_settings(home, nats_url, **settings),
                    own=ServiceSettings(name=spec.name, database_url=database_url),
                    overrides=overrides)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms Nagle wait per request
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{spec.name} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


class EventTap:
    """Reads what services published on a subject, from the start of the stream."""

    def __init__(self, nats_url: str, subject: str) -> None:
        self.nats_url, self.subject = nats_url, subject
        self.seen: list[Envelope] = []
        self._bus: Bus | None = None
        self._sub = None

    async def __aenter__(self) -> EventTap:
        self._bus = provisioner_bus(self.nats_url, "test-tap")
        await self._bus.connect(attempts=20)
        await self._bus.ensure_streams()
        assert self._bus.js is not None
        self._sub = await self._bus.js.pull_subscribe(self.subject, durable=f"tap-{uuid.uuid4().hex[:8]}",
                                                      stream=self._stream())
        return self

    def _stream(self) -> str:
        return "TRIAL_DLQ" if self.subject.startswith("trial.dlq.") else "TRIAL"

    async def __aexit__(self, *exc: object) -> None:
        if self._bus:
            await self._bus.close()

    async def poll(self, seconds: float = 0.3) -> list[Envelope]:
        assert self._sub is not None
        try:
            for msg in await self._sub.fetch(100, timeout=seconds):
                self.seen.append(Envelope.model_validate_json(msg.data))
                await msg.ack()
        except TimeoutError:  # nats' own, or asyncio's from inside fetch: nothing (more) to read
            pass
        return self.seen

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Envelope]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(await self.poll()) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.seen)} of {count} events on {self.subject}")
        return self.seen

    async def first(self, matches: Callable[[Envelope], bool],
                    timeout: float = 20.0) -> Envelope:
        """The first event that `matches`: a service may publish others on the subject too
        (a start-up sweep, say) in an order the test does not control."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (found := [e for e in await self.poll() if matches(e)]):
            if loop.time() > deadline:
                raise AssertionError(f"no matching event among {len(self.seen)} on {self.subject}")
        return found[0]
