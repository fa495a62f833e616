"""Run a service in-process for integration tests: its real lifespan (migrations, bus,
consumers, relay), a real nats-server and database, and callers with signed tokens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.core.internal_token import (
    HEADER,
    Caller,
    InternalTokenSigner,
    ensure_keypair,
    load_private_key,
)
from services.core.roles import Role
from services.core.runner import Kernel, ServiceSpec, build_app
from services.core.settings import ServiceSettings, Settings

PROTOCOL = Path("protocols/perpain-pilot.yaml")


def test_settings(home: Path, nats_url: str, **overrides: object) -> Settings:
    return Settings(home=home, nats_url=nats_url, protocol_file=PROTOCOL, log_json=False,
                    log_level="warning", outbox_poll_seconds=0.1, **overrides)


def token_headers(home: Path, service: str, role: Role | str, subject: str = "tester") -> dict[str, str]:
    keys = ensure_keypair(home / "keys")
    signer = InternalTokenSigner(load_private_key(keys.private_key.read_bytes()))
    token = signer.sign(Caller(subject=subject, role=Role(role)), audience=service)
    return {HEADER: token}


@dataclass
class RunningService:
    app: FastAPI
    client: httpx.AsyncClient
    home: Path
    name: str

    @property
    def kernel(self) -> Kernel:
        return self.app.state.kernel  # type: ignore[no-any-return]

    def as_role(self, role: Role | str, subject: str = "tester") -> dict[str, str]:
        return token_headers(self.home, self.name, role, subject)


@asynccontextmanager
async def running_service(spec: ServiceSpec, *, home: Path, nats_url: str, database_url: str,
                          **settings: object) -> AsyncIterator[RunningService]:
    ensure_keypair(home / "keys")
    app = build_app(spec, config=test_settings(home, nats_url, **settings),
                    own=ServiceSettings(name=spec.name, database_url=database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{spec.name}") as client:
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
