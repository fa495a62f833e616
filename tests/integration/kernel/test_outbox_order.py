"""Outbox order and wake-ups: positions from a sequence on PostgreSQL (no two concurrent
transactions share one), publication in position order even after a partial failure, and
`wake()` from a worker thread under asyncio's debug mode."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from sqlmodel import Session, select

from services.core import outbox
from services.core.db import make_engine, unit_of_work
from services.core.events import Envelope, Event
from services.core.migrations import run_migrations
from tailor_cli.natsd import NatsServer
from tests.support.harness import eventually, provisioner_bus

MIGRATIONS = Path("gateway/migrations")


class Counted(Event):
    subject: ClassVar[str] = "trial.v1.test.counted"
    n: int


def _stage(engine, n: int) -> str:
    with unit_of_work(engine) as session:
        return outbox.enqueue(session, Counted(n=n), producer="test").id


async def test_relay_publishes_in_order_after_a_partial_failure(engine, nats_server: NatsServer) -> None:
    bus = provisioner_bus(nats_server.url, "test")
    await bus.connect(attempts=20)
    await bus.ensure_streams()
    for n in range(5):
        _stage(engine, n)
    failed: list[int] = []

    async def flaky(subject: str, data: bytes, msg_id: str) -> object:
        n = Envelope.model_validate_json(data).data["n"]
        if n == 2 and not failed:
            failed.append(n)
            raise ConnectionError("bus hiccup on the third row")
        return await bus.publish(subject, data, msg_id)

    relay = outbox.OutboxRelay(engine, flaky)
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    with Session(engine) as session:
        assert outbox.backlog(session) == 3  # 0 and 1 went out and are marked sent
    assert await relay.relay_once() == 3
    assert bus.js is not None
    info = await bus.js.stream_info("TRIAL")
    order = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await bus.js.get_msg("TRIAL", seq)
        order.append(Envelope.model_validate_json(msg.data or b"").data["n"])
    assert order == [0, 1, 2, 3, 4]
    await bus.close()


async def test_wake_from_a_worker_thread_under_debug_mode(engine) -> None:
    loop = asyncio.get_running_loop()
    was_debug = loop.get_debug()
    loop.set_debug(True)  # asyncio then refuses loop calls from other threads
    published = asyncio.Event()

    async def publish(_subject: str, _data: bytes, _msg_id: str) -> object:
        published.set()
        return None

    relay = outbox.OutboxRelay(engine, publish, poll_seconds=3600)  # only a wake can help
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: bool(relay._wake.event._waiters))  # idle, waiting for a wake

        def commit_and_wake() -> None:  # what a request handler does in the thread pool
            _stage(engine, 1)
            relay.wake()

        await asyncio.to_thread(commit_and_wake)
        await asyncio.wait_for(published.wait(), 60)
    finally:
        stop.set()
        await task
        loop.set_debug(was_debug)


@pytest.mark.postgres
def test_concurrent_transactions_get_distinct_positions(postgres_url: str) -> None:
    run_migrations(MIGRATIONS, postgres_url)
    engine = make_engine(postgres_url)
    both_staged = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def stage(n: int) -> None:
        try:
            with unit_of_work(engine) as session:
                outbox.enqueue(session, Counted(n=n), producer="test")
                session.flush()
                both_staged.wait()  # neither has committed when the other numbers its row
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stage, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with Session(engine) as session:
        positions = [r.position for r in session.exec(select(outbox.OutboxMessage))]
    engine.dispose()
    assert len(positions) == 2 and len(set(positions)) == 2 and None not in positions
