"""Outbox → relay → bus → consumer → inbox: a crash between publish and mark-sent
republishes, and the consumer still applies each effect exactly once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

import pytest
from sqlmodel import Session, select

from services.core import audit, outbox
from services.core.audit import AuditEntry
from services.core.consumers import Consumer, apply_once, to_spec
from services.core.db import unit_of_work
from services.core.events import Envelope, Event
from tailor_cli.natsd import NatsServer
from tests.support.harness import eventually, provisioner_bus

MIGRATIONS = Path("gateway/migrations")


class ThingHappened(Event):
    subject: ClassVar[str] = "trial.v1.test.thing_happened"
    n: int


def _stage(engine, count: int) -> list[str]:
    ids = []
    with unit_of_work(engine) as session:
        for n in range(count):
            audit.append(session, actor="producer", role="system", action="thing.happened",
                         entity_type="thing", entity_id=str(n))
            ids.append(outbox.enqueue(session, ThingHappened(n=n), producer="test").id)
    return ids


def _effect(session: Session, env: Envelope) -> None:
    audit.append(session, actor="consumer", role="system", action="thing.applied",
                 entity_type="thing", entity_id=str(env.data["n"]))


def _effects(engine) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.action == "thing.applied"))
        return sorted(r.entity_id for r in rows)


async def test_relay_crash_between_publish_and_mark_sent(engine, nats_server: NatsServer) -> None:
    bus = provisioner_bus(nats_server.url, "test")
    await bus.connect(attempts=20)
    consumer = Consumer("t-effects", ("trial.v1.test.>",), _effect)
    stop = asyncio.Event()
    spec = to_spec(consumer, engine, "test", wake=lambda: None, default_max_deliver=5)
    await bus.ensure_consumer(spec)
    bus.start_consumer(spec, stop)

    ids = _stage(engine, 5)
    crashed = outbox.OutboxRelay(engine, bus.publish)
    await crashed.publish_rows(crashed.pending())  # published ... and then the process died
    with Session(engine) as session:
        assert outbox.backlog(session) == 5

    restarted = outbox.OutboxRelay(engine, bus.publish)
    assert await restarted.relay_once() == 5  # everything is published again
    with Session(engine) as session:
        assert outbox.backlog(session) == 0

    await eventually(lambda: len(_effects(engine)) == 5)
    await asyncio.sleep(0.5)  # give any duplicate time to arrive
    assert _effects(engine) == [str(n) for n in range(5)]
    info = await bus.js.stream_info("TRIAL")
    assert info.state.messages == 5  # the server dropped the republished copies

    # Past the duplicate window the server cannot help: the inbox still refuses a 2nd effect.
    with Session(engine) as session:
        row = session.get(outbox.OutboxMessage, ids[0])
        assert row is not None
        await bus.publish(row.subject, row.envelope.encode(), msg_id=f"{row.id}-late-copy")
    await asyncio.sleep(1.0)
    assert _effects(engine) == [str(n) for n in range(5)]
    with Session(engine) as session:
        assert audit.verify(session).ok
    stop.set()
    await bus.close()


def test_inbox_applies_a_redelivered_event_once(engine) -> None:
    env = Envelope(subject=ThingHappened.subject, producer="p", data={"n": 7})
    consumer = Consumer("t-once", ("trial.v1.test.>",), _effect)
    assert apply_once(engine, consumer, env, "test") is True
    assert apply_once(engine, consumer, env, "test") is False
    assert _effects(engine) == ["7"]


def test_effect_and_inbox_roll_back_together(engine) -> None:
    env = Envelope(subject=ThingHappened.subject, producer="p", data={"n": 8})

    def half_done(session: Session, e: Envelope) -> None:
        _effect(session, e)
        raise RuntimeError("crash after the effect, before commit")

    with pytest.raises(RuntimeError):
        apply_once(engine, Consumer("t-atomic", ("x",), half_done), env, "test")
    assert _effects(engine) == []
    assert apply_once(engine, Consumer("t-atomic", ("x",), _effect), env, "test") is True
    assert _effects(engine) == ["8"]
