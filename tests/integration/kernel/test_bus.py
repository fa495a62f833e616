"""The bus against a real nats-server started for each test."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from nats.aio.msg import Msg

from services.core import dead_letters, metrics
from services.core.bus import DLQ_STREAM, Bus, ConsumerSpec
from services.core.errors import PermanentError
from tailor_cli.natsd import NatsServer
from tests.support.harness import eventually, provisioner_bus


async def _bus(server: NatsServer, name: str = "test") -> Bus:
    """The provisioner's rights: these tests make their own durables on test subjects."""
    bus = provisioner_bus(server.url, name, duplicate_window=120)
    await bus.connect(attempts=20)
    await bus.ensure_streams()
    return bus


async def _start(bus: Bus, spec: ConsumerSpec, stop: asyncio.Event) -> None:
    await bus.ensure_consumer(spec)  # what `tailor nats provision` does for a service's durables
    bus.start_consumer(spec, stop)


async def test_publish_consume_ack(nats_server: NatsServer) -> None:
    bus = await _bus(nats_server)
    seen: list[bytes] = []

    async def handle(msg: Msg) -> None:
        seen.append(msg.data)

    stop = asyncio.Event()
    await _start(bus, ConsumerSpec("t-ack", ("trial.v1.test.>",), handle), stop)
    for i in range(10):
        await bus.publish("trial.v1.test.thing", f"m{i}".encode(), msg_id=f"id-{i}")
    await eventually(lambda: len(seen) == 10)
    info = await bus.js.consumer_info("TRIAL", "t-ack")
    assert [s.decode() for s in seen] == [f"m{i}" for i in range(10)]
    assert info.num_pending == 0
    stop.set()
    await bus.close()


async def test_duplicate_msg_id_is_suppressed_by_the_server(nats_server: NatsServer) -> None:
    bus = await _bus(nats_server)
    first = await bus.publish("trial.v1.test.thing", b"one", msg_id="same")
    second = await bus.publish("trial.v1.test.thing", b"one again", msg_id="same")
    assert not first.duplicate
    assert second.duplicate
    info = await bus.js.stream_info("TRIAL")
    assert info.state.messages == 1
    await bus.close()


async def test_streams_are_created_idempotently(nats_server: NatsServer) -> None:
    bus = await _bus(nats_server)
    await bus.ensure_streams()
    other = await _bus(nats_server, "other")
    names = {s.config.name for s in await bus.js.streams_info()}
    assert {"TRIAL", "TRIAL_DLQ"} <= names
    await bus.close()
    await other.close()


async def test_failed_handler_is_redelivered_after_nak_delay(nats_server: NatsServer) -> None:
    bus = await _bus(nats_server)
    deliveries: list[int] = []

    async def flaky(msg: Msg) -> None:
        deliveries.append(msg.metadata.num_delivered)
        if len(deliveries) < 3:
            raise RuntimeError("database busy")

    stop = asyncio.Event()
    await _start(bus, ConsumerSpec("t-nak", ("trial.v1.test.>",), flaky, backoff_base=0.2), stop)
    await bus.publish("trial.v1.test.thing", b"x", msg_id="x")
    await eventually(lambda: len(deliveries) == 3)
    assert deliveries == [1, 2, 3]
    before = metrics.CONSUMER_MESSAGES.labels("test", "t-nak", "nak")._value.get()
    assert before >= 2
    stop.set()
    await bus.close()


async def _dead_letters(bus: Bus, n: int) -> list:
    sub = await bus.js.pull_subscribe("trial.dlq.>", durable="dlq-reader", stream=DLQ_STREAM)
    got: list = []
    for _ in range(100):
        try:
            got += await sub.fetch(n - len(got), timeout=0.5)
        except Exception:
            pass
        if len(got) >= n:
            break
    return got


async def test_message_is_dead_lettered_after_max_deliver(nats_server: NatsServer) -> None:
    bus = await _bus(nats_server)
    attempts = Counter()

    async def always_fails(msg: Msg) -> None:
        attempts[msg.data] += 1
        raise RuntimeError("downstream broken")

    stop = asyncio.Event()
    await _start(bus, ConsumerSpec("t-dead", ("trial.v1.test.>",), always_fails, max_deliver=3,
                                    backoff_base=0.05), stop)
    await bus.publish("trial.v1.test.thing", b"doomed", msg_id="doomed")
    letters = await _dead_letters(bus, 1)
    assert attempts[b"doomed"] == 3
    assert letters[0].data == b"doomed"
    assert letters[0].headers["Tailor-Dead-Letter-Reason"] == "max_deliveries"
    assert letters[0].headers["Tailor-Original-Subject"] == "trial.v1.test.thing"
    assert letters[0].headers["Tailor-Consumer"] == "t-dead"
    assert letters[0].headers["Tailor-Deliveries"] == "3"
    assert letters[0].headers["Tailor-Error"] == "RuntimeError"  # its kind; the text is logged
    assert metrics.DEAD_LETTERS.labels("test", "t-dead", "max_deliveries")._value.get() >= 1
    stop.set()
    await bus.close()


async def test_poison_message_is_terminated_and_dead_lettered(nats_server: NatsServer) -> None:
    bus = await _bus(nats_server)
    attempts: list[bytes] = []

    async def refuses(msg: Msg) -> None:
        attempts.append(msg.data)
        raise PermanentError("cannot parse")

    stop = asyncio.Event()
    await _start(bus, ConsumerSpec("t-poison", ("trial.v1.test.>",), refuses), stop)
    await bus.publish("trial.v1.test.thing", b"poison", msg_id="p")
    letters = await _dead_letters(bus, 1)
    assert attempts == [b"poison"]  # terminated at once, never retried
    assert letters[0].headers["Tailor-Dead-Letter-Reason"] == "terminated"
    assert letters[0].headers["Tailor-Error"] == "PermanentError"  # its kind; the text is logged

    # Inspected and replayed: the consumer gets the original event on its subject again.
    [listed] = await dead_letters.newest(bus.js, 10)
    assert (listed.consumer, listed.reason, listed.original_subject) == (
        "t-poison", "terminated", "trial.v1.test.thing")
    await dead_letters.replay(bus.js, listed.seq)
    await eventually(lambda: attempts == [b"poison", b"poison"])
    stop.set()
    await bus.close()


@pytest.mark.timeout(120)
async def test_consumption_resumes_after_nats_server_is_killed(nats_server: NatsServer) -> None:
    """SIGKILL mid-stream, restart on the same store: every message is handled."""
    producer = await _bus(nats_server, "producer")
    consumer = await _bus(nats_server, "consumer")
    handled: set[int] = set()

    async def handle(msg: Msg) -> None:
        handled.add(json.loads(msg.data)["n"])
        await asyncio.sleep(0.002)

    stop = asyncio.Event()
    await _start(consumer, ConsumerSpec("t-kill", ("trial.v1.test.>",), handle), stop)

    async def publish_all(numbers: range) -> None:
        for n in numbers:
            while True:  # what the outbox relay does: retry until acknowledged
                try:
                    await producer.publish("trial.v1.test.n", json.dumps({"n": n}).encode(),
                                           msg_id=f"n-{n}")
                    break
                except Exception:
                    await asyncio.sleep(0.1)

    await publish_all(range(0, 300))
    await eventually(lambda: len(handled) >= 50)
    nats_server.kill()  # mid-stream: the consumer has not seen everything yet
    assert len(handled) < 300
    await asyncio.sleep(1.0)
    nats_server.start()
    await publish_all(range(300, 400))
    await eventually(lambda: len(handled) == 400, timeout=60)
    assert handled == set(range(400))
    stop.set()
    await producer.close()
    await consumer.close()
