"""Service runner: one process = the service's FastAPI app, its consumers, its outbox
relay and its audit beacon, started and drained together by the app's lifespan.

What a service reads on the bus is its spec's subscriptions (`bus_subscriptions`): the
provisioner creates those durables and the NATS permissions are derived from them
(`bus_grant`), so a service refuses to start with a consumer its spec does not declare."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import Engine

from . import audit, audit_witness, metrics
from .audit_api import audit_router
from .bus import Bus, TlsFiles
from .bus_contract import Grant, Subscription, check_durables, grant
from .consumers import Consumer, to_spec
from .db import make_engine, unit_of_work
from .events import AuditHead
from .http import EdgeMiddleware, health_router, install_error_handlers
from .logging import configure_logging
from .migrations import run_migrations
from .outbox import OutboxMessage, OutboxRelay, enqueue
from .outbox_retention import purge_sent_outbox
from .protocol import TrialProtocol
from .settings import ServiceSettings, Settings, service_settings, settings

log = structlog.get_logger(__name__)

Background = Callable[["Kernel"], Awaitable[None]]


@dataclass
class ServiceSpec:
    """What makes a service: its name, migrations, routes, consumers and startup hooks."""

    name: str
    migrations: Path
    routers: Sequence[APIRouter] = ()
    # A list, or a factory that builds the consumers from the running kernel (protocol, extras).
    consumers: Sequence[Consumer] | Callable[[Kernel], Sequence[Consumer]] = ()
    on_startup: Sequence[Callable[[Kernel], None]] = ()
    background: Sequence[Background] = ()
    title: str | None = None
    description: str = ""
    # What `consumers` subscribes to, when it is a factory (a list speaks for itself).
    subscriptions: Sequence[Subscription] = ()
    reads_dead_letters: bool = False  # the operators' dead-letter view


def bus_subscriptions(spec: ServiceSpec) -> list[Subscription]:
    """Every durable the service reads: its own, and (but for the gateway) the gateway's
    audit heads, which every other service witnesses."""
    if callable(spec.consumers):
        own = list(spec.subscriptions)
    else:
        own = [Subscription(c.durable, c.subjects) for c in spec.consumers]
    if spec.name != "gateway":
        own.append(audit_witness.gateway_heads(spec.name))
    return own


def bus_grant(spec: ServiceSpec) -> Grant:
    subscriptions = bus_subscriptions(spec)
    check_durables(spec.name, subscriptions)
    return grant(spec.name, subscriptions, reads_dead_letters=spec.reads_dead_letters)


def _declared(spec: ServiceSpec, consumers: Sequence[Consumer]) -> None:
    built = {(c.durable, tuple(c.subjects)) for c in consumers}
    declared = {(s.durable, tuple(s.subjects)) for s in bus_subscriptions(spec)}
    if not built <= declared:
        raise RuntimeError(f"{spec.name} consumes {sorted(built - declared)}, which its spec does "
                           "not declare: the provisioner and the bus permissions would not know it")


@dataclass
class Kernel:
    """The running service's shared parts, on `app.state.kernel`."""

    name: str
    settings: Settings
    own: ServiceSettings
    protocol: TrialProtocol
    engine: Engine
    bus: Bus
    relay: OutboxRelay
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    extras: dict[str, Any] = field(default_factory=dict)


def build_app(spec: ServiceSpec, *, config: Settings | None = None,
              own: ServiceSettings | None = None) -> FastAPI:
    config = config or settings()
    own = own or service_settings(spec.name)
    protocol = config.protocol()  # a bad protocol file fails here, naming the key

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, level=config.log_level, json=config.log_json)
        kernel = await start_kernel(spec, config, own, protocol)
        app.state.kernel = kernel
        try:
            yield
        finally:
            await stop_kernel(kernel)

    app = FastAPI(title=spec.title or f"Tailor {spec.name}", description=spec.description,
                  lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, service=spec.name)
    app.include_router(health_router())
    app.include_router(audit_router())  # before the service's own: the kernel's audit API wins
    for router in spec.routers:
        app.include_router(router)
    return app


async def start_kernel(spec: ServiceSpec, config: Settings, own: ServiceSettings,
                       protocol: TrialProtocol) -> Kernel:
    url = own.resolved_database_url(config.home)
    engine = make_engine(url)
    if config.migrate_on_start:
        await asyncio.to_thread(run_migrations, spec.migrations, url, engine=engine)
    tls = config.nats_tls()
    bus = Bus(config.nats_url, spec.name, duplicate_window=config.duplicate_window_seconds,
              credentials=config.nats_credentials(spec.name),
              tls=TlsFiles(*tls) if tls else None)
    await bus.connect()  # streams and durables exist already: the provisioner made them
    relay = OutboxRelay(engine, bus.publish, poll_seconds=config.outbox_poll_seconds,
                        on_backlog=metrics.OUTBOX_BACKLOG.labels(spec.name).set)
    kernel = Kernel(spec.name, config, own, protocol, engine, bus, relay)
    await asyncio.to_thread(record_start, kernel)
    try:
        for hook in spec.on_startup:
            hook(kernel)
        consumers = list(spec.consumers(kernel) if callable(spec.consumers) else spec.consumers)
        _declared(spec, consumers)
    except BaseException:  # a refused start-up must not leave the bus connected
        await bus.close()
        engine.dispose()
        raise
    tasks = kernel.extras.setdefault("tasks", [])
    tasks.append(asyncio.create_task(relay.run(kernel.stop), name="outbox-relay"))
    if spec.name != "gateway":
        witness = audit_witness.gateway_heads(spec.name)
        consumers.append(Consumer(witness.durable, witness.subjects, _gateway_witness(spec.name)))
    for consumer in consumers:
        bus.start_consumer(to_spec(consumer, engine, spec.name, wake=relay.wake,
                                   default_max_deliver=config.max_deliver), kernel.stop)
    tasks.append(asyncio.create_task(audit_beacon(kernel), name="audit-beacon"))
    tasks.append(asyncio.create_task(purge_sent_outbox(
        engine, keep_days=protocol.data_retention.outbox_sent_days,
        interval_seconds=config.outbox_purge_interval_seconds, stop=kernel.stop),
        name="outbox-purge"))
    for job in spec.background:
        tasks.append(asyncio.create_task(job(kernel), name=getattr(job, "__name__", "job")))
    log.info("service.started", database=engine.dialect.name, nats=config.nats_url)
    return kernel


async def stop_kernel(kernel: Kernel) -> None:
    """Graceful: stop taking work, let in-flight handlers and the relay finish, drain NATS."""
    kernel.stop.set()
    tasks = kernel.extras.get("tasks", [])
    if tasks:
        await asyncio.wait(tasks, timeout=10)  # the relay flushes what is pending
    await kernel.bus.close(kernel.stop)
    kernel.engine.dispose()
    log.info("service.stopped")


def record_start(kernel: Kernel) -> None:
    """Audit which protocol file governs this process, by content hash."""
    raw = kernel.settings.protocol_file.read_bytes()
    with unit_of_work(kernel.engine) as session:
        audit.append(session, actor=f"service:{kernel.name}", role="system",
                     action="service.started", entity_type="protocol",
                     entity_id=kernel.protocol.trial.id,
                     after={"protocol_file": str(kernel.settings.protocol_file),
                            "protocol_sha256": hashlib.sha256(raw).hexdigest()})


def stage_audit_head(engine: Engine, service: str, published: int) -> int:
    """Stage a beacon through the outbox when the chain grew since the last one."""
    with unit_of_work(engine) as session:
        last = audit.head(session)
        length = (last.seq or 0) if last else 0
        if last is None or length == published:
            return published
        event_id = f"{service}-audit-head-{length}"
        if session.get(OutboxMessage, event_id) is None:
            event = AuditHead(service=service, length=length, head_hash=last.hash,
                              at=datetime.now(UTC))
            enqueue(session, event, producer=service, event_id=event_id,
                    subject=AuditHead.subject.format(service=service))
        return length


def _gateway_witness(service: str) -> Callable[[Any, Any], None]:
    def handle(session: Any, env: Any) -> None:
        audit_witness.witness_gateway_head(session, env, service=service)
    return handle


async def audit_beacon(kernel: Kernel) -> None:
    """Announce the audit-chain head after every committed append batch (the appends of
    `audit_head_batch_seconds` after the first), so a witness can detect truncation within
    that window; `audit_head_interval_seconds` is only a backstop."""
    loop = asyncio.get_running_loop()
    appended = asyncio.Event()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(appended.set)
        except RuntimeError:  # the loop is closed: the process is stopping
            pass

    audit_witness.watch_appends(kernel.engine, wake)
    published = -1
    while not kernel.stop.is_set():
        appended.clear()
        try:
            length = await asyncio.to_thread(stage_audit_head, kernel.engine, kernel.name,
                                             published)
            if length != published:
                kernel.relay.wake()
                metrics.AUDIT_LENGTH.labels(kernel.name).set(length)
                published = length
        except Exception as exc:
            log.warning("audit.beacon_failed", error=repr(exc))
        waits = [asyncio.ensure_future(appended.wait()), asyncio.ensure_future(kernel.stop.wait())]
        await asyncio.wait(waits, timeout=kernel.settings.audit_head_interval_seconds,
                           return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        if appended.is_set():  # let the batch gather: one head for a burst of appends
            try:
                await asyncio.wait_for(kernel.stop.wait(), kernel.settings.audit_head_batch_seconds)
            except TimeoutError:
                pass


def server_config(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0,
                  log_level: str = "warning") -> uvicorn.Config:
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 (or
    # FORWARDED_ALLOW_IPS); the gateway decides itself, from its trusted_proxies setting.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                          timeout_graceful_shutdown=15, access_log=False, proxy_headers=False)


def serve(app: FastAPI, *, host: str, port: int, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; uvicorn then runs the lifespan's graceful shutdown."""
    uvicorn.Server(server_config(app, host=host, port=port, log_level=log_level)).run()
