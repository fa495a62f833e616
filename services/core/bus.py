"""The event bus: NATS JetStream through nats-py.

- Streams are created (or updated) idempotently at start-up: `TRIAL` for facts, with a
  duplicate window so a republished `Nats-Msg-Id` is dropped; `TRIAL_ADVISORIES` keeps the
  server's max-deliveries and terminated advisories durably; `TRIAL_DLQ` holds dead letters.
- Consumers are durable pull consumers with explicit ack. A handler that returns acks; one
  that raises `PermanentError` terms (poison); anything else naks with exponential backoff
  and jitter. A terminated message, or one that used its `max_deliver` attempts, is moved
  to the dead-letter stream by the server's advisory (`start_dead_letter_mover`), with
  headers naming its reason, last error, consumer, original subject and deliveries.
  Conditions worth waiting for (a participant without a sealed list) never reach it:
  services park those in their own database.
- nats-py's pull subscriptions can stay silent after the server restarts (nats.py #504):
  every consumer loop re-creates its subscription after a reconnect, and also whenever
  fetches keep coming back empty while the server says messages are pending.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from . import metrics
from .errors import PermanentError

log = structlog.get_logger(__name__)

STREAM = "TRIAL"
DLQ_STREAM = "TRIAL_DLQ"
ADVISORY_STREAM = "TRIAL_ADVISORIES"
MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
TERMINATED = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"

Handler = Callable[[Msg], Awaitable[None]]


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 60.0,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: uniform in [min(base/2, ceiling), ceiling] where
    ceiling = min(cap, base·2^(attempt-1)); the floor keeps retries from bunching at zero."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(min(base / 2, ceiling), ceiling)


@dataclass(frozen=True)
class ConsumerSpec:
    durable: str
    subjects: tuple[str, ...]
    handler: Handler
    max_deliver: int = 8
    ack_wait: float = 10.0  # also how long a delivery lost with a dead connection waits
    batch: int = 32
    backoff_base: float = 0.5
    stream: str = STREAM


@dataclass
class Bus:
    url: str
    service: str
    duplicate_window: float = 300.0
    nc: Client | None = None
    js: JetStreamContext | None = None
    reconnects: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # (consumer, stream seq) → the last handler error, for the dead letter's reason
    _errors: dict[tuple[str, int], str] = field(default_factory=dict)

    # ── connection ────────────────────────────────────────────────────────
    async def connect(self, *, attempts: int = 0) -> None:
        """Connect, retrying forever (attempts=0) or `attempts` times."""
        tried = 0
        while True:
            try:
                self.nc = await nats.connect(
                    self.url, name=f"tailor-{self.service}", max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25, connect_timeout=2, drain_timeout=5,
                    reconnected_cb=self._on_reconnect, disconnected_cb=self._on_disconnect,
                    error_cb=self._on_error,
                )
                break
            except Exception as exc:
                tried += 1
                if attempts and tried >= attempts:
                    raise
                log.warning("bus.connect_retry", error=repr(exc), attempt=tried)
                await asyncio.sleep(min(5.0, 0.2 * tried))
        self.js = self.nc.jetstream(timeout=5)

    async def _on_reconnect(self) -> None:
        self.reconnects += 1
        log.info("bus.reconnected", reconnects=self.reconnects)

    async def _on_disconnect(self) -> None:
        log.warning("bus.disconnected")

    async def _on_error(self, exc: Exception) -> None:
        log.debug("bus.error", error=repr(exc))

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected)

    async def close(self, stop: asyncio.Event | None = None) -> None:
        """Let consumer loops finish their batch (they watch `stop`), then drain."""
        if stop is not None:
            stop.set()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            _done, late = await asyncio.wait(pending, timeout=3)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.nc and not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception as exc:
                log.debug("bus.drain_failed", error=repr(exc))

    # ── streams ───────────────────────────────────────────────────────────
    async def ensure_streams(self) -> None:
        assert self.js is not None
        await self._ensure(StreamConfig(
            name=STREAM, subjects=["trial.v1.>"], storage=StorageType.FILE,
            duplicate_window=self.duplicate_window))
        await self._ensure(StreamConfig(
            name=DLQ_STREAM, subjects=["trial.dlq.>"], storage=StorageType.FILE,
            duplicate_window=self.duplicate_window))
        await self._ensure(StreamConfig(
            name=ADVISORY_STREAM, storage=StorageType.FILE, max_age=14 * 24 * 3600,
            subjects=[f"{MAX_DELIVERIES}.{STREAM}.>", f"{TERMINATED}.{STREAM}.>"]))

    async def _ensure(self, config: StreamConfig) -> None:
        assert self.js is not None
        try:
            await self.js.add_stream(config)
        except BadRequestError:  # exists with another configuration: bring it up to date
            await self.js.update_stream(config)

    # ── publish ───────────────────────────────────────────────────────────
    async def publish(self, subject: str, data: bytes, msg_id: str,
                      headers: dict[str, str] | None = None) -> PubAck:
        assert self.js is not None
        started = time.perf_counter()
        ack = await self.js.publish(subject, data, headers={"Nats-Msg-Id": msg_id, **(headers or {})})
        metrics.BUS_PUBLISH_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        return ack

    # ── consume ───────────────────────────────────────────────────────────
    def start_consumer(self, spec: ConsumerSpec, stop: asyncio.Event) -> asyncio.Task[None]:
        task = asyncio.create_task(self._consume(spec, stop), name=f"consumer:{spec.durable}")
        self._tasks.append(task)
        return task

    async def _subscribe(self, spec: ConsumerSpec) -> JetStreamContext.PullSubscription:
        assert self.js is not None
        config = ConsumerConfig(
            durable_name=spec.durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, max_deliver=spec.max_deliver,
            ack_wait=spec.ack_wait, max_ack_pending=1000,
            **({"filter_subject": spec.subjects[0]} if len(spec.subjects) == 1
               else {"filter_subjects": list(spec.subjects)}),
        )
        try:
            await self.js.add_consumer(spec.stream, config)
        except BadRequestError:
            await self.js.add_consumer(spec.stream, config)  # update of an existing durable
        return await self.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)

    async def _consume(self, spec: ConsumerSpec, stop: asyncio.Event) -> None:
        sub: JetStreamContext.PullSubscription | None = None
        generation, idle = -1, 0
        while not stop.is_set():
            try:
                if sub is None or generation != self.reconnects:
                    if sub is not None:
                        await _quietly(sub.unsubscribe())
                    generation = self.reconnects
                    sub = await self._subscribe(spec)
                msgs = await sub.fetch(spec.batch, timeout=1.0)
                idle = 0
            except TimeoutError:  # nats' own timeout, or asyncio's from inside fetch: no messages
                idle += 1
                if idle % 10 == 0 and await self._stuck(spec):
                    log.warning("bus.resubscribe", consumer=spec.durable)
                    sub = None
                continue
            except Exception as exc:  # server gone or restarting: back off, then resubscribe
                log.warning("bus.fetch_failed", consumer=spec.durable, error=repr(exc))
                sub = None
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                await self._dispatch(spec, msg)
        if sub is not None:
            await _quietly(sub.unsubscribe())

    async def _stuck(self, spec: ConsumerSpec) -> bool:
        """Empty fetches while the server holds undelivered messages: the subscription is dead."""
        assert self.js is not None
        try:
            info = await self.js.consumer_info(spec.stream, spec.durable)
        except Exception:
            return True
        return bool(info.num_pending)

    async def _dispatch(self, spec: ConsumerSpec, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            await spec.handler(msg)
            outcome = "ack"
            await msg.ack()
        except PermanentError as exc:
            outcome = "term"
            self._remember(spec, msg, f"{type(exc).__name__}: {exc}")
            log.error("bus.poison_message", consumer=spec.durable, error=str(exc))
            await _quietly(msg.term())
        except Exception as exc:
            outcome = "nak"
            self._remember(spec, msg, repr(exc))
            attempt = msg.metadata.num_delivered if msg.metadata else 1
            delay = backoff_delay(attempt, base=spec.backoff_base)
            log.warning("bus.handler_failed", consumer=spec.durable, attempt=attempt,
                        retry_in=round(delay, 2), error=repr(exc))
            await _quietly(msg.nak(delay=delay))
        metrics.CONSUMER_MESSAGES.labels(self.service, spec.durable, outcome).inc()
        metrics.CONSUMER_SECONDS.labels(self.service, spec.durable).observe(
            time.perf_counter() - started)

    # ── dead letters ──────────────────────────────────────────────────────
    def _remember(self, spec: ConsumerSpec, msg: Msg, error: str) -> None:
        seq = msg.metadata.sequence.stream if msg.metadata and msg.metadata.sequence else None
        if seq is None:
            return
        if len(self._errors) >= 10_000:  # bounded: forget the oldest
            self._errors.pop(next(iter(self._errors)))
        self._errors[(spec.durable, seq)] = error[:500]

    def start_dead_letter_mover(self, durables: list[str], stop: asyncio.Event) -> None:
        if not durables:
            return
        subjects = tuple(f"{kind}.{STREAM}.{d}" for d in durables
                         for kind in (MAX_DELIVERIES, TERMINATED))
        self.start_consumer(ConsumerSpec(
            durable=f"{self.service}-dead-letters", subjects=subjects,
            handler=self._move_dead_letter, stream=ADVISORY_STREAM, max_deliver=20), stop)

    async def _move_dead_letter(self, advisory: Msg) -> None:
        assert self.js is not None
        info = json.loads(advisory.data)
        consumer, seq = info["consumer"], int(info["stream_seq"])
        reason = "max_deliveries" if advisory.subject.startswith(MAX_DELIVERIES) else "terminated"
        try:
            original = await self.js.get_msg(STREAM, seq)
        except NotFoundError:
            log.error("bus.dead_letter_lost", consumer=consumer, stream_seq=seq)
            return
        error = self._errors.pop((consumer, seq), "not recorded by this process (another replica)")
        headers = {
            "Tailor-Dead-Letter-Reason": reason,
            "Tailor-Error": error,
            "Tailor-Consumer": consumer,
            "Tailor-Original-Subject": original.subject or "",
            "Tailor-Stream-Seq": str(seq),
            "Tailor-Deliveries": str(info.get("deliveries", "")),
        }
        await self.publish(f"trial.dlq.{consumer}", original.data or b"",
                           msg_id=f"dlq-{consumer}-{seq}", headers=headers)
        metrics.DEAD_LETTERS.labels(self.service, consumer, reason).inc()
        log.error("bus.dead_lettered", consumer=consumer, stream_seq=seq, reason=reason)


async def _quietly(aw: Awaitable[object]) -> None:
    try:
        await aw
    except Exception as exc:
        log.debug("bus.ignored_error", error=repr(exc))
