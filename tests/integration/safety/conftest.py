"""Fixtures of the safety integration tests: the service on a real nats-server and database,
a frozen clock, a bus probe and a stand-in randomization service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.safety.app import SPEC
from tailor_cli.natsd import NatsServer
from tests.support.harness import RunningService, provisioner_bus, running_service

from .safety_support import BusProbe, FakeRandomization, FrozenClock, serve_in_thread


@pytest.fixture(scope="module")
def fake_randomization() -> Iterator[FakeRandomization]:
    yield from serve_in_thread(FakeRandomization())


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def safety(tmp_path: Path, nats_server: NatsServer, database_url: str,
                 monkeypatch: pytest.MonkeyPatch, clock: FrozenClock,
                 fake_randomization: FakeRandomization) -> AsyncIterator[RunningService]:
    monkeypatch.setenv("TAILOR_SAFETY_OBLIGATION_CHECK_SECONDS", "0.1")
    monkeypatch.setenv("TAILOR_RANDOMIZATION_URL", fake_randomization.url)
    fake_randomization.allocations, fake_randomization.callers = [], []
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, overrides={"clock": clock}) as svc:
        fake_randomization.trust(tmp_path)
        yield svc


@pytest.fixture
async def probe(nats_server: NatsServer) -> AsyncIterator[BusProbe]:
    bus = provisioner_bus(nats_server.url, "test-probe")
    await bus.connect(attempts=20)
    await bus.ensure_streams()
    yield BusProbe(bus)
    await bus.close()
