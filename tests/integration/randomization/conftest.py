"""Fixtures of the randomization service tests: a list key in the environment, the
service running in-process on a real nats-server and database, a direct database."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from services.core.db import make_engine
from services.core.migrations import run_migrations
from services.core.protocol import TrialProtocol, load_protocol
from services.randomization.app import SPEC
from services.randomization.keys import ENV_KEY, ENV_KEY_FILE, ListKey
from services.randomization.service import Context
from tailor_cli.natsd import NatsServer
from tests.support.harness import RunningService, running_service

PROTOCOL_FILE = Path("protocols/perpain-pilot.yaml")
KEY_BYTES = hashlib.sha256(b"randomization integration test list key").digest()


@pytest.fixture(autouse=True)
def list_key(monkeypatch: pytest.MonkeyPatch) -> ListKey:
    """Every test runs with a known list key in the environment (as a deployment would)."""
    monkeypatch.delenv(ENV_KEY_FILE, raising=False)
    monkeypatch.setenv(ENV_KEY, base64.b64encode(KEY_BYTES).decode())
    return ListKey(KEY_BYTES, source="test")


@pytest.fixture(scope="session")
def protocol() -> TrialProtocol:
    return load_protocol(PROTOCOL_FILE)


@pytest.fixture
async def svc(tmp_path: Path, nats_server: NatsServer, database_url: str) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url) as running:
        yield running


@pytest.fixture
async def sqlite_svc(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path / 'randomization.db'}") as running:
        yield running


@pytest.fixture
def migrated(database_url: str) -> Iterator[Engine]:
    """A migrated randomization database without a running service (use cases direct)."""
    engine = make_engine(database_url, pool_size=12)
    run_migrations(SPEC.migrations, database_url, engine=engine)
    yield engine
    engine.dispose()


@pytest.fixture
def context(list_key: ListKey, protocol: TrialProtocol) -> Context:
    return Context(key=list_key, protocol=protocol)
