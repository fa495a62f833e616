"""Personal data does not pile up at rest in transport: sent outbox rows are deleted after
the protocol's `data_retention.outbox_sent_days` (a periodic job of every service), and the
TRIAL stream and its dead letters keep a message `data_retention.bus_days` at most."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from sqlmodel import Session, col, select, update

from services.core import outbox
from services.core.bus import DLQ_STREAM, STREAM
from services.core.db import make_engine, unit_of_work
from services.core.events import Event
from services.core.migrations import run_migrations
from services.core.outbox import OutboxMessage
from services.core.outbox_retention import purge_sent, purge_sent_outbox
from services.core.protocol import load_protocol
from services.safety.app import SPEC as SAFETY
from tailor_cli.natsd import NatsServer
from tests.support.harness import PROTOCOL, eventually, provisioner_bus, running_service

MIGRATIONS = Path("gateway/migrations")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class ContactSaved(Event):
    subject: ClassVar[str] = "trial.v1.test.contact_saved"
    email: str


def _stage(engine, email: str, *, sent_at: datetime | None) -> str:
    with unit_of_work(engine) as session:
        env = outbox.enqueue(session, ContactSaved(email=email), producer="test")
    if sent_at is not None:
        with unit_of_work(engine) as session:
            session.exec(update(OutboxMessage).where(col(OutboxMessage.id) == env.id)  # type: ignore[call-overload]
                         .values(sent_at=sent_at))
    return env.id


def _left(engine) -> set[str]:
    with Session(engine) as session:
        return {m.id for m in session.exec(select(OutboxMessage))}


def test_sent_rows_older_than_retention_are_deleted_and_nothing_else(engine) -> None:
    old = _stage(engine, "old@example.org", sent_at=NOW - timedelta(days=8))
    recent = _stage(engine, "recent@example.org", sent_at=NOW - timedelta(days=6))
    unsent = _stage(engine, "waiting@example.org", sent_at=None)  # never purged: not sent yet

    assert purge_sent(engine, older_than=timedelta(days=7), now=NOW) == 1
    assert _left(engine) == {recent, unsent}
    assert old not in _left(engine)
    assert purge_sent(engine, older_than=timedelta(days=7), now=NOW) == 0  # idempotent


async def test_the_periodic_job_purges_at_start_and_stops_when_asked(engine) -> None:
    stale = _stage(engine, "stale@example.org", sent_at=datetime.now(UTC) - timedelta(days=30))
    fresh = _stage(engine, "fresh@example.org", sent_at=datetime.now(UTC))
    stop = asyncio.Event()
    job = asyncio.create_task(purge_sent_outbox(engine, keep_days=7, interval_seconds=3600,
                                                stop=stop))
    await eventually(lambda: stale not in _left(engine))
    stop.set()
    await asyncio.wait_for(job, timeout=5)
    assert _left(engine) == {fresh}


async def test_a_running_service_purges_its_sent_outbox_and_bounds_the_stream(
        tmp_path: Path, nats_server: NatsServer) -> None:
    database_url = f"sqlite:///{tmp_path / 'safety.db'}"
    run_migrations(Path("services/safety/migrations"), database_url)
    early = make_engine(database_url)
    stale = _stage(early, "stale@example.org", sent_at=datetime.now(UTC) - timedelta(days=30))
    early.dispose()
    retention = load_protocol(PROTOCOL).data_retention

    async with running_service(SAFETY, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url) as svc:
        await eventually(lambda: stale not in _left(svc.kernel.engine))  # its job, at start
        bus = provisioner_bus(nats_server.url, "observer")
        await bus.connect(attempts=20)
        await bus.ensure_streams()  # a client without a retention does not lift it
        assert bus.js is not None
        for stream in (STREAM, DLQ_STREAM):
            info = await bus.js.stream_info(stream)
            assert info.config.max_age == pytest.approx(retention.bus_days * 86400)
        await bus.close()
