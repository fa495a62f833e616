"""Service runner: one process = the service's FastAPI app, its consumers, its outbox
relay and its audit beacon, started and drained together by the app's lifespan."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import Engine

from . import audit, metrics
from .audit_api import audit_router
from .bus import Bus
from .consumers import Consumer, to_spec
from .db import make_engine, unit_of_work
from .events import AuditHead
from .http import EdgeMiddleware, health_router, install_error_handlers
from .logging import configure_logging
from .migrations import run_migrations
from .outbox import OutboxMessage, OutboxRelay, enqueue
from .protocol import TrialProtocol
from .settings import ServiceSettings, Settings, service_settings, settings

log = structlog.get_logger(__name__)

Background = Callable[["Kernel"], Coroutine[Any, Any, None]]


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
    bus = Bus(config.nats_url, spec.name, duplicate_window=config.duplicate_window_seconds)
    await bus.connect()
    await bus.ensure_streams()
    relay = OutboxRelay(engine, bus.publish, poll_seconds=config.outbox_poll_seconds,
                        on_backlog=metrics.OUTBOX_BACKLOG.labels(spec.name).set)
    kernel = Kernel(spec.name, config, own, protocol, engine, bus, relay)
    await asyncio.to_thread(record_start, kernel)
    try:
        for hook in spec.on_startup:
            hook(kernel)
    except BaseException:  # a refused start-up must not leave the bus connected
        await bus.close()
        engine.dispose()
        raise
    tasks = kernel.extras.setdefault("tasks", [])
    tasks.append(asyncio.create_task(relay.run(kernel.stop), name="outbox-relay"))
    consumers = spec.consumers(kernel) if callable(spec.consumers) else spec.consumers
    for consumer in consumers:
        bus.start_consumer(to_spec(consumer, engine, spec.name, wake=relay.wake,
                                   default_max_deliver=config.max_deliver), kernel.stop)
    bus.start_dead_letter_mover([c.durable for c in consumers], kernel.stop)
    tasks.append(asyncio.create_task(audit_beacon(kernel), name="audit-beacon"))
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


async def audit_beacon(kernel: Kernel) -> None:
    """Publish the audit-chain head now and then, so a witness can detect truncation."""
    published = -1
    while not kernel.stop.is_set():
        try:
            length = await asyncio.to_thread(stage_audit_head, kernel.engine, kernel.name,
                                             published)
            if length != published:
                kernel.relay.wake()
                metrics.AUDIT_LENGTH.labels(kernel.name).set(length)
                published = length
        except Exception as exc:
            log.warning("audit.beacon_failed", error=repr(exc))
        try:
            await asyncio.wait_for(kernel.stop.wait(), kernel.settings.audit_head_interval_seconds)
        except TimeoutError:
            pass


def serve(app: FastAPI, *, host: str, port: int, log_level: str = "warning") -> None:
    """Run until SIGINT/SIGTERM; uvicorn then runs the lifespan's graceful shutdown."""
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=15, access_log=False)
    uvicorn.Server(config).run()
