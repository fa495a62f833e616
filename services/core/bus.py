"""The event bus: NATS JetStream through nats-py.

- Every connection authenticates with its service's NKey seed (`credentials`), optionally
  over TLS; its inbox is `_INBOX.<service>`, the only subject its user may subscribe to.
- Streams and durable consumers are created by the provisioner (`tailor`, see
  `provision()`), never by a service: `TRIAL` for facts, with a duplicate window so a
  republished `Nats-Msg-Id` is dropped, and `TRIAL_DLQ` for dead letters. A service binds
  to its durables and may only pull from, ack and inspect them (bus_contract.py).
- Consumers are durable pull consumers with explicit ack. A consumer with a batch handler
  gets each fetched batch in one call (the consumer edge applies it in one transaction) and
  says per message how it went; every message is then settled as below, after the call.
  A handler that returns acks; one
  that raises `PermanentError` is dead-lettered and terminated (poison); anything else
  naks with the kernel's backoff (`backoff.py`), and is dead-lettered on its `max_deliver`-th
  failure. The server redelivers without limit, so a delivery lost with a dead process
  still reaches a live one, which moves it: the service moves its own dead letters from
  the message in hand and never needs to read the stream by sequence number.
- nats-py's pull subscriptions can stay silent after the server restarts (nats.py #504):
  every consumer loop re-creates its subscription after a reconnect, and also whenever
  fetches keep coming back empty while the server says messages are pending.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    PubAck,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from . import metrics
from .backoff import backoff_seconds
from .bus_contract import DLQ_STREAM, STREAM, Subscription, inbox_prefix
from .errors import PermanentError

log = structlog.get_logger(__name__)

__all__ = ["DLQ_STREAM", "STREAM", "Bus", "ConsumerSpec", "TlsFiles"]

Handler = Callable[[Msg], Awaitable[None]]
# Handles a fetched batch at once; one outcome per message, in order: None (done: ack) or
# the exception that message failed with (settled as a handler's exception would be).
BatchHandler = Callable[[list[Msg]], Awaitable[list[BaseException | None]]]
MIN_SERVER = (2, 10)  # multi-subject consumer filters (older servers deliver the whole stream)


class BusUnavailable(RuntimeError):
    """NATS cannot be used at start-up; the message names the setting to look at."""


def redact_url(urls: str) -> str:
    """The NATS URL(s) as they may be logged: user and password replaced."""
    def one(url: str) -> str:
        parts = urlsplit(url.strip())
        if parts.username is None and parts.password is None:
            return url.strip()
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return ",".join(one(u) for u in urls.split(","))


def check_server_version(version: tuple[int, int, int]) -> None:
    if tuple(version[:2]) < MIN_SERVER:
        found = ".".join(str(v) for v in version)
        raise BusUnavailable(
            f"TAILOR_NATS_URL: nats-server {found} is too old; Tailor needs "
            f"{MIN_SERVER[0]}.{MIN_SERVER[1]} or newer (multi-subject consumers)")


REDELIVERY_CAP_SECONDS = 60.0  # a failing handler is retried at least once a minute


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
    # When set, a fetched batch goes to it in one call (the consumer edge applies it in one
    # transaction); `handler` is then unused.
    batch_handler: BatchHandler | None = None

    @property
    def subscription(self) -> Subscription:
        return Subscription(self.durable, self.subjects, self.stream)


@dataclass(frozen=True)
class TlsFiles:
    """Server verification (`ca`) and, where the server asks for one, a client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert and self.key:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


@dataclass
class Bus:
    url: str
    service: str
    duplicate_window: float = 300.0
    credentials: Path | None = None  # the service's NKey seed file
    tls: TlsFiles | None = None
    replicas: int = 1
    max_bytes: int = -1
    nc: Client | None = None
    js: JetStreamContext | None = None
    reconnects: int = 0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    # ── connection ────────────────────────────────────────────────────────
    async def connect(self, *, attempts: int = 0,
                      should_stop: Callable[[], bool] = lambda: False) -> None:
        """Connect, retrying forever (attempts=0) or `attempts` times, each failure logged;
        `should_stop` (a SIGTERM during start-up) ends the waiting at once. Once connected,
        lost connections are re-established forever."""
        tried = 0
        auth: dict[str, object] = {}
        if self.credentials is not None:
            auth["nkeys_seed"] = str(self.credentials)
        if self.tls is not None:
            auth["tls"] = self.tls.context()
        servers = [u.strip() for u in self.url.split(",") if u.strip()]
        while True:
            try:
                # Bounded inside connect() too: with -1, nats-py never returns from a first
                # connect to an unreachable server.
                self.nc = await nats.connect(
                    servers, name=f"tailor-{self.service}", max_reconnect_attempts=1,
                    reconnect_time_wait=0.25, connect_timeout=2, drain_timeout=5,
                    reconnected_cb=self._on_reconnect, disconnected_cb=self._on_disconnect,
                    error_cb=self._on_error, inbox_prefix=inbox_prefix(self.service),
                    **auth,  # type: ignore[arg-type]
                )
                break
            except Exception as exc:
                tried += 1
                log.error("bus.connect_failed", nats=redact_url(self.url), attempt=tried,
                          of=attempts or "unbounded", error=type(exc).__name__)
                if attempts and tried >= attempts:
                    raise BusUnavailable(
                        f"TAILOR_NATS_URL: no NATS server answered at {redact_url(self.url)} "
                        f"after {tried} attempts ({type(exc).__name__})") from None
                if await _sleep_unless(should_stop, backoff_seconds(tried, base=0.4, cap=5.0)):
                    raise BusUnavailable("stopped while waiting for NATS") from None
        self.nc.options["max_reconnect_attempts"] = -1  # from now on: reconnect forever
        version = self.nc.connected_server_version
        try:
            check_server_version((version.major, version.minor, version.patch))
        except BusUnavailable:
            await self.nc.close()
            raise
        self.js = self.nc.jetstream(timeout=5)

    async def _on_reconnect(self) -> None:
        self.reconnects += 1
        log.info("bus.reconnected", reconnects=self.reconnects)

    async def _on_disconnect(self) -> None:
        log.warning("bus.disconnected")

    async def _on_error(self, exc: Exception) -> None:
        # A permissions violation is the server refusing something this user may not do.
        level = log.warning if "permissions violation" in str(exc).lower() else log.debug
        level("bus.error", error=repr(exc))

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

    # ── provisioning (the provisioner's credentials only) ─────────────────
    async def ensure_streams(self, *, max_age: float | None = None) -> None:
        """`max_age` (seconds): how long `TRIAL` and `TRIAL_DLQ` keep a message (the
        protocol's retention of personal data); None keeps what the streams have."""
        assert self.js is not None
        # Replicas and limits come from settings: 3 replicas on a 3-node cluster, so a lost
        # node loses nothing. A full stream refuses new publishes (the outbox keeps the event
        # and retries, the backlog alert fires) instead of silently dropping old facts.
        for name, subjects in ((STREAM, ["trial.v1.>"]), (DLQ_STREAM, ["trial.dlq.>"])):
            facts = name == STREAM
            await self._ensure(StreamConfig(
                name=name, subjects=subjects, storage=StorageType.FILE,
                duplicate_window=self.duplicate_window, num_replicas=self.replicas,
                max_age=max_age if max_age is not None else await self._max_age(name),
                max_bytes=self.max_bytes if facts else None,
                discard=DiscardPolicy.NEW if facts else None))

    async def ensure_consumer(self, sub: Subscription | ConsumerSpec, *, ack_wait: float = 10.0,
                              max_ack_pending: int = 1000) -> None:
        """Create or update a durable pull consumer. The server redelivers without limit
        (`max_deliver=-1`): the consuming service counts attempts and dead-letters."""
        assert self.js is not None
        if isinstance(sub, ConsumerSpec):
            ack_wait, sub = sub.ack_wait, sub.subscription
        config = ConsumerConfig(
            durable_name=sub.durable, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, max_deliver=-1, ack_wait=ack_wait,
            max_ack_pending=max_ack_pending,
            **({"filter_subject": sub.subjects[0]} if len(sub.subjects) == 1
               else {"filter_subjects": list(sub.subjects)}),
        )
        try:
            await self.js.add_consumer(sub.stream, config)
        except BadRequestError:
            await self.js.add_consumer(sub.stream, config)  # update of an existing durable

    async def provision(self, subscriptions: Sequence[Subscription], *,
                        max_age: float | None = None) -> None:
        await self.ensure_streams(max_age=max_age)
        for sub in subscriptions:
            await self.ensure_consumer(sub)

    async def _max_age(self, stream: str) -> float | None:
        assert self.js is not None
        try:
            return (await self.js.stream_info(stream)).config.max_age
        except NotFoundError:
            return None

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
        """Bind to the provisioned durable; until it exists, say so and keep trying."""
        assert self.js is not None
        try:
            await self.js.consumer_info(spec.stream, spec.durable)
        except NotFoundError:
            log.error("bus.consumer_not_provisioned", consumer=spec.durable,
                      hint="run `tailor nats provision` with the provisioner's credentials")
            raise
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
            if spec.batch_handler is not None:
                await self._dispatch_batch(spec, spec.batch_handler, msgs)
            else:
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
        attempt = _attempt(msg)
        error: BaseException | None = None
        try:
            if attempt > spec.max_deliver:  # its last attempt was lost with a process
                raise _Exhausted(f"delivered {attempt} times")
            await spec.handler(msg)
        except Exception as exc:
            error = exc
        await self._settle(spec, msg, attempt, error, started)

    async def _dispatch_batch(self, spec: ConsumerSpec, handle: BatchHandler,
                              msgs: list[Msg]) -> None:
        """The batch in one call; each message then acked, retried or dead-lettered by its own
        outcome, in delivery order. If the call itself fails, every message failed with it."""
        started = time.perf_counter()
        outcomes: dict[int, BaseException | None] = {}
        ready = []
        for i, msg in enumerate(msgs):
            if _attempt(msg) > spec.max_deliver:  # its last attempt was lost with a process
                outcomes[i] = _Exhausted(f"delivered {_attempt(msg)} times")
            else:
                ready.append(i)
        if ready:
            try:
                results = await handle([msgs[i] for i in ready])
                if len(results) != len(ready):
                    raise RuntimeError(f"{len(results)} outcomes for {len(ready)} messages")
            except Exception as exc:
                results = [exc] * len(ready)
            outcomes.update(zip(ready, results, strict=True))
        for i, msg in enumerate(msgs):
            await self._settle(spec, msg, _attempt(msg), outcomes[i], started)

    async def _settle(self, spec: ConsumerSpec, msg: Msg, attempt: int,
                      error: BaseException | None, started: float) -> None:
        """Ack a handled message; dead-letter a poison or exhausted one; nak the rest."""
        if error is None:
            outcome = "ack"
            try:
                await msg.ack()
            except Exception as exc:  # handled and committed: the redelivery is a duplicate
                log.warning("bus.ack_failed", consumer=spec.durable, error=repr(exc))
        elif isinstance(error, PermanentError):
            log.error("bus.poison_message", consumer=spec.durable, error=str(error))
            outcome = await self._dead_letter(spec, msg, "terminated", attempt, error)
        elif isinstance(error, _Exhausted) or attempt >= spec.max_deliver:
            outcome = await self._dead_letter(spec, msg, "max_deliveries", attempt, error)
        else:
            outcome = "nak"
            delay = _redelivery_delay(spec, attempt)
            log.warning("bus.handler_failed", consumer=spec.durable, attempt=attempt,
                        retry_in=round(delay, 2), error=repr(error))
            await _quietly(msg.nak(delay=delay))
        metrics.CONSUMER_MESSAGES.labels(self.service, spec.durable, outcome).inc()
        metrics.CONSUMER_SECONDS.labels(self.service, spec.durable).observe(
            time.perf_counter() - started)

    # ── dead letters ──────────────────────────────────────────────────────
    async def _dead_letter(self, spec: ConsumerSpec, msg: Msg, reason: str, attempt: int,
                           error: BaseException) -> str:
        """Copy the message to `trial.dlq.<durable>`, then terminate it. If the copy fails
        the message is nak'ed instead, so it is retried rather than lost."""
        seq = msg.metadata.sequence.stream if msg.metadata else 0
        headers = {
            "Tailor-Dead-Letter-Reason": reason,
            "Tailor-Original-Subject": msg.subject or "",
            "Tailor-Stream-Seq": str(seq),
            "Tailor-Deliveries": str(attempt),
            "Tailor-Consumer": spec.durable,
            # The error's kind only: its text may name a blinded fact (it is logged instead).
            "Tailor-Error": type(error).__name__,
        }
        try:
            await self.publish(f"trial.dlq.{spec.durable}", msg.data or b"",
                               msg_id=f"dlq-{spec.durable}-{seq}", headers=headers)
        except Exception as exc:
            log.warning("bus.dead_letter_failed", consumer=spec.durable, error=repr(exc))
            await _quietly(msg.nak(delay=_redelivery_delay(spec, attempt)))
            return "nak"
        await _quietly(msg.term())
        metrics.DEAD_LETTERS.labels(self.service, spec.durable, reason).inc()
        log.error("bus.dead_lettered", consumer=spec.durable, stream_seq=seq, reason=reason,
                  error=repr(error)[:500])
        return "term"


def _attempt(msg: Msg) -> int:
    return msg.metadata.num_delivered if msg.metadata else 1


def _redelivery_delay(spec: ConsumerSpec, attempt: int) -> float:
    return backoff_seconds(attempt, base=spec.backoff_base, cap=REDELIVERY_CAP_SECONDS)


class _Exhausted(Exception):
    """A message that has used up its deliveries before reaching the handler again."""


async def _sleep_unless(should_stop: Callable[[], bool], seconds: float) -> bool:
    """Sleep in short steps; True as soon as `should_stop()` says so."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if should_stop():
            return True
        await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return should_stop()


async def _quietly(aw: Awaitable[object]) -> None:
    try:
        await aw
    except Exception as exc:
        log.debug("bus.ignored_error", error=repr(exc))
