"""A fetched batch is applied in one transaction (SQLite and PostgreSQL): a failing message
takes back only its own effect and inbox row, the others commit; `after_commit` listeners
run after the batch's commit and never for a rolled-back message; a crash between the
commit and the acks redelivers, and the inbox skips it."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import ClassVar

from sqlalchemy import event
from sqlmodel import Session, select

from services.core import audit, metrics
from services.core.audit import AuditEntry
from services.core.bus import DLQ_STREAM
from services.core.consumers import Consumer, apply_batch, to_spec
from services.core.errors import Conflict, PermanentError
from services.core.events import Envelope, Event
from tailor_cli.natsd import NatsServer
from tests.support.harness import eventually, provisioner_bus

MIGRATIONS = Path("gateway/migrations")


class Counted(Event):
    subject: ClassVar[str] = "trial.v1.test.counted"
    n: int


def _env(n: int) -> Envelope:
    return Envelope(subject=Counted.subject, producer="test", data={"n": n})


def _applied(session: Session, env: Envelope) -> None:
    audit.append(session, actor="consumer", role="system", action="counted.applied",
                 entity_type="count", entity_id=str(env.data["n"]))


def _effects(engine) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.action == "counted.applied"))
        return sorted(int(r.entity_id) for r in rows)


def _commits(engine) -> list[int]:
    """Database transactions committed on `engine` from now on (savepoints not counted)."""
    seen: list[int] = []
    event.listen(engine, "commit", lambda _conn: seen.append(1))
    return seen


def _savepoints(engine) -> list[int]:
    seen: list[int] = []
    event.listen(engine, "savepoint", lambda _conn, _name: seen.append(1))
    return seen


def test_a_batch_is_one_transaction_without_savepoints_when_nothing_fails(engine) -> None:
    consumer = Consumer("t-clean", ("trial.v1.test.>",), _applied)
    commits, savepoints = _commits(engine), _savepoints(engine)
    assert apply_batch(engine, consumer, [_env(n) for n in range(4)], "test") == [True] * 4
    assert (len(commits), len(savepoints)) == (1, 0)
    assert _effects(engine) == [0, 1, 2, 3]


def test_one_commit_for_the_batch_and_a_failing_message_rolls_back_alone(engine) -> None:
    def handle(session: Session, env: Envelope) -> None:
        _applied(session, env)  # every message has an effect before it may fail
        if env.data["n"] == 1:
            raise Conflict("the rules refuse this one")
        if env.data["n"] == 3:
            raise RuntimeError("a transient failure after the effect")

    consumer = Consumer("t-batch", ("trial.v1.test.>",), handle)
    envs = [_env(n) for n in range(5)]
    commits = _commits(engine)
    outcomes = apply_batch(engine, consumer, envs, "test")
    assert len(commits) == 1
    assert [type(o) if isinstance(o, Exception) else o for o in outcomes] == [
        True, PermanentError, True, RuntimeError, True]
    assert _effects(engine) == [0, 2, 4]
    with Session(engine) as session:
        assert audit.verify(session).ok  # entries after a rolled-back savepoint chain on
    # The failed ones left no inbox row: their retry applies them; the others are skipped.
    retry = Consumer("t-batch", ("trial.v1.test.>",), _applied)
    assert apply_batch(engine, retry, envs, "test") == [False, True, False, True, False]
    assert _effects(engine) == [0, 1, 2, 3, 4]
    with Session(engine) as session:
        assert audit.verify(session).ok


def test_after_commit_listeners_run_once_committed_and_never_for_a_rolled_back_message(
        engine) -> None:
    ran: list[tuple[int, bool]] = []

    def visible_elsewhere(n: int) -> bool:  # from another connection: committed
        return n in _effects(engine)

    def handle(session: Session, env: Envelope) -> None:
        n = env.data["n"]
        _applied(session, env)
        event.listen(session, "after_commit",
                     lambda _s: ran.append((n, visible_elsewhere(n))), once=True)
        if n == 1:
            raise RuntimeError("rolled back after registering its listener")

    apply_batch(engine, Consumer("t-listeners", ("x",), handle), [_env(n) for n in range(3)],
                "test")
    assert ran == [(0, True), (2, True)]


async def test_a_poison_message_in_a_fetched_batch_is_dead_lettered_alone(
        engine, nats_server: NatsServer) -> None:
    bus = provisioner_bus(nats_server.url, "test")
    await bus.connect(attempts=20)
    await bus.ensure_streams()
    for n in range(6):  # all on the stream before the consumer starts: fetched together
        env = _env(n)
        await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)

    def handle(session: Session, env: Envelope) -> None:
        _applied(session, env)
        if env.data["n"] == 2:
            raise Conflict("refused by the rules")

    stop = asyncio.Event()
    spec = to_spec(Consumer("t-poison-batch", ("trial.v1.test.>",), handle), engine, "test",
                   wake=lambda: None, default_max_deliver=5)
    await bus.ensure_consumer(spec)
    bus.start_consumer(spec, stop)
    await eventually(lambda: _effects(engine) == [0, 1, 3, 4, 5])
    assert bus.js is not None

    async def dead_lettered() -> bool:
        return (await bus.js.stream_info(DLQ_STREAM)).state.messages == 1

    await eventually(dead_lettered)
    letter = await bus.js.get_last_msg(DLQ_STREAM, "trial.dlq.t-poison-batch")
    assert Envelope.model_validate_json(letter.data or b"").data["n"] == 2
    with Session(engine) as session:
        assert audit.verify(session).ok
    await bus.close(stop)


async def test_a_crash_between_commit_and_ack_redelivers_and_the_inbox_skips_it(
        engine, nats_server: NatsServer) -> None:
    bus = provisioner_bus(nats_server.url, "test")
    await bus.connect(attempts=20)
    await bus.ensure_streams()
    for n in range(3):
        env = _env(n)
        await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)
    durable = "t-crash-before-ack"
    spec = to_spec(Consumer(durable, ("trial.v1.test.>",), _applied), engine, "test",
                   wake=lambda: None, default_max_deliver=5)
    spec = dataclasses.replace(spec, ack_wait=1.0)  # the lost acks are redelivered soon
    await bus.ensure_consumer(spec)
    assert bus.js is not None and spec.batch_handler is not None

    # The process fetches the batch, commits its effects ... and dies before acking.
    crashed = await bus.js.pull_subscribe_bind(durable=durable, stream="TRIAL")
    fetched: list = []
    while len(fetched) < 3:
        fetched += await crashed.fetch(3 - len(fetched), timeout=5)
    assert await spec.batch_handler(fetched) == [None, None, None]
    await crashed.unsubscribe()
    assert _effects(engine) == [0, 1, 2]

    duplicates = metrics.DUPLICATES.labels("test", durable)
    before = duplicates._value.get()
    stop = asyncio.Event()
    bus.start_consumer(spec, stop)  # the restarted process

    async def all_acked() -> bool:
        info = await bus.js.consumer_info("TRIAL", durable)
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(lambda: duplicates._value.get() - before == 3)
    await eventually(all_acked)
    assert _effects(engine) == [0, 1, 2]  # redelivered, skipped: no second effect
    await bus.close(stop)
