"""Service runner: one process = the service's FastAPI app, its consumers, its outbox
relay and its audit beacon, started and drained together by the app's lifespan.

What a service reads on the bus is its spec's subscriptions (`bus_subscriptions`): the
provisioner creates those durables and the NATS permissions are derived from them
(`bus_grant`), so a service refuses to start with a consumer its spec does not declare."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import Engine

from . import audit, audit_witness, metrics
from .audit_api import audit_router
from .auth import verifier_for
from .bus import Bus, BusUnavailable, TlsFiles, redact_url
from .bus_contract import Grant, Subscription, check_durables, grant
from .consumers import Consumer, to_spec
from .db import is_sqlite, make_engine, unit_of_work
from .events import AuditHead
from .http import EdgeMiddleware, health_router, install_error_handlers
from .logging import configure_logging
from .migrations import run_migrations
from .outbox import OutboxMessage, OutboxRelay, enqueue
from .outbox_retention import purge_sent_outbox
from .periodic import Wake, idle
from .protocol import TrialProtocol
from .sealing import RECIPIENTS, BusKeyError, load_keyring
from .settings import ServiceSettings, Settings, service_settings, settings

log = structlog.get_logger(__name__)

D = TypeVar("D")
Job = Callable[[D], Coroutine[Any, Any, None]]
Readiness = Callable[[], str | None]  # names what is missing, or None when ready
# Set by SIGTERM/SIGINT while `serve` runs: start-up steps that wait (NATS) give up at once.
SHUTDOWN_REQUESTED = threading.Event()


LOGGED_NOTE = "tailor: this start-up failure was logged as service.start_failed"


class StartupError(RuntimeError):
    """Start-up cannot go on; the message is one line naming the setting to fix."""


@dataclass
class ServiceSpec(Generic[D]):
    """What makes a service: its name, migrations, routes, its composition root, consumers
    and jobs. `bootstrap` (the service's `bootstrap.py`) builds the typed dependencies once
    from the running kernel; routes read them from `app.state.deps`, and the consumer
    factory and every job receive them as their argument. Without a bootstrap the
    dependencies are the kernel itself."""

    name: str
    migrations: Path
    routers: Sequence[APIRouter] = ()
    bootstrap: Callable[[Kernel], D] | None = None
    # A list, or a factory that builds the consumers from the dependencies.
    consumers: Sequence[Consumer] | Callable[[D], Sequence[Consumer]] = ()
    background: Sequence[Job[D]] = ()
    title: str | None = None
    description: str = ""
    # Its routes check the gateway's internal token: readiness needs the public key.
    verifies_internal_tokens: bool = True
    # What `consumers` subscribes to, when it is a factory (a list speaks for itself).
    subscriptions: Sequence[Subscription] = ()
    reads_dead_letters: bool = False  # the operators' dead-letter view


def bus_subscriptions(spec: ServiceSpec[Any]) -> list[Subscription]:
    """Every durable the service reads: its own, and (but for the gateway) the gateway's
    audit heads, which every other service witnesses."""
    if callable(spec.consumers):
        own = list(spec.subscriptions)
    else:
        own = [c.subscription for c in spec.consumers]
    if spec.name != "gateway":
        own.append(audit_witness.gateway_heads(spec.name))
    return own


def bus_grant(spec: ServiceSpec[Any]) -> Grant:
    subscriptions = bus_subscriptions(spec)
    check_durables(spec.name, subscriptions)
    return grant(spec.name, subscriptions, reads_dead_letters=spec.reads_dead_letters)


def _declared(spec: ServiceSpec[Any], consumers: Sequence[Consumer]) -> None:
    built = {(c.durable, tuple(c.subjects), c.stream) for c in consumers}
    declared = {(s.durable, tuple(s.subjects), s.stream) for s in bus_subscriptions(spec)}
    if not built <= declared:
        raise RuntimeError(f"{spec.name} consumes {sorted(built - declared)}, which its spec does "
                           "not declare: the provisioner and the bus permissions would not know it")


@dataclass
class Kernel:
    """The running service's shared parts, on `app.state.kernel`. What only one service
    needs is not here: its `bootstrap` builds that into its own typed dependencies."""

    name: str
    settings: Settings
    own: ServiceSettings
    protocol: TrialProtocol
    engine: Engine
    bus: Bus
    relay: OutboxRelay
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # `/readyz` runs each check (in a worker thread); a service adds its own needs.
    readiness: dict[str, Readiness] = field(default_factory=dict)
    # Long-running tasks: awaited (10 s at most) when the process stops.
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # The gateway signs its audit heads (its witnesses verify them); other services do not.
    head_signer: Callable[[bytes], str] | None = None
    # Signs the audit chain's checkpoints (audit.CheckpointKey); None: every verification
    # re-hashes the whole chain.
    audit_key: audit.CheckpointKey | None = None

    def spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.create_task(job, name=name))


def build_app(spec: ServiceSpec[Any], *, config: Settings | None = None,
              own: ServiceSettings | None = None,
              overrides: dict[str, Any] | None = None) -> FastAPI:
    """The one way a service is assembled. `overrides` replaces fields of the dependencies
    its bootstrap built (tests hand in a clock they move) before anything uses them."""
    config = config or settings()
    own = own or service_settings(spec.name)
    protocol = config.protocol()  # a bad protocol file fails here, naming the key

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(spec.name, level=config.log_level, json=config.log_json)
        try:
            kernel, deps = await start_kernel(spec, config, own, protocol, overrides)
        except Exception as exc:
            # One line naming the setting (key and config errors carry it in their
            # message); the traceback only at debug level.
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.error("service.start_failed", reason=reason, error=type(exc).__name__)
            log.debug("service.start_failed_trace", exc_info=True)
            exc.add_note(LOGGED_NOTE)  # uvicorn's traceback of it is dropped (see serve)
            raise
        app.state.kernel = kernel
        app.state.deps = deps
        try:
            yield
        finally:
            await stop_kernel(kernel)

    # No /docs or /redoc in any process; a service's /openapi.json stays for the gateway,
    # which builds the public document from it (only the gateway may reach a service).
    app = FastAPI(title=spec.title or f"Tailor {spec.name}", description=spec.description,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, service=spec.name, access_log=config.access_log)
    app.include_router(health_router(metrics=not config.metrics_port))
    app.include_router(audit_router())  # before the service's own: the kernel's audit API wins
    for router in spec.routers:
        app.include_router(router)
    return app


async def start_kernel(spec: ServiceSpec[D], config: Settings, own: ServiceSettings,
                       protocol: TrialProtocol,
                       overrides: dict[str, Any] | None = None) -> tuple[Kernel, D]:
    url = own.resolved_database_url(config.home)
    engine = make_engine(url, pool_size=config.db_pool_size, max_overflow=config.db_max_overflow)
    if config.migrate_on_start:
        await asyncio.to_thread(run_migrations, spec.migrations, url, engine=engine)
    tls = config.nats_tls()
    bus = Bus(config.nats_url, spec.name, duplicate_window=config.duplicate_window_seconds,
              credentials=config.nats_credentials(spec.name),
              tls=TlsFiles(*tls) if tls else None,
              replicas=config.nats_stream_replicas, max_bytes=config.nats_stream_max_bytes)
    try:
        # Streams and durables exist already: the provisioner (`tailor nats provision`) made them.
        await bus.connect(attempts=config.nats_connect_attempts,
                          should_stop=SHUTDOWN_REQUESTED.is_set)
    except BusUnavailable as exc:
        engine.dispose()
        raise StartupError(str(exc)) from None
    relay = OutboxRelay(engine, bus.publish, poll_seconds=config.outbox_poll_seconds,
                        on_backlog=metrics.OUTBOX_BACKLOG.labels(spec.name).set)
    kernel = Kernel(spec.name, config, own, protocol, engine, bus, relay)
    kernel.audit_key = _audit_key(spec.name, config, engine)
    if spec.verifies_internal_tokens:
        kernel.readiness["internal_token_key"] = lambda: _public_key_problem(kernel)
    await asyncio.to_thread(record_start, kernel)
    try:
        deps = _compose(spec, kernel, overrides)
        consumers = list(spec.consumers(deps) if callable(spec.consumers) else spec.consumers)
        _declared(spec, consumers)
    except BaseException:  # a refused start-up must not leave the bus connected
        await bus.close()
        engine.dispose()
        raise
    kernel.spawn(relay.run(kernel.stop), "outbox-relay")
    if spec.name != "gateway":
        witness = audit_witness.gateway_heads(spec.name)
        consumers.append(Consumer(witness.durable, witness.subjects, _gateway_witness(kernel)))
    for consumer in consumers:
        bus.start_consumer(to_spec(consumer, engine, spec.name, wake=relay.wake,
                                   default_max_deliver=config.max_deliver), kernel.stop)
    kernel.spawn(audit_beacon(kernel), "audit-beacon")
    kernel.spawn(purge_sent_outbox(
        engine, keep_days=protocol.data_retention.outbox_sent_days,
        interval_seconds=config.outbox_purge_interval_seconds, stop=kernel.stop),
        "outbox-purge")
    for job in spec.background:
        kernel.spawn(job(deps), getattr(job, "__name__", "job"))
    log.info("service.started", database=engine.dialect.name, nats=redact_url(config.nats_url))
    return kernel, deps


def _audit_key(name: str, config: Settings, engine: Engine) -> audit.CheckpointKey | None:
    """Derived from the service's private bus key (each service but the gateway holds one;
    the gateway's comes from its token-signing key, gateway/security/runtime.py). A missing
    bus key is the bootstrap's to report, naming the variable."""
    if name not in RECIPIENTS:
        return None
    try:
        keyring = load_keyring(name, config.home, embedded=is_sqlite(engine))
    except BusKeyError:
        return None
    return audit.checkpoint_key(keyring.secret_material())


def _compose(spec: ServiceSpec[D], kernel: Kernel, overrides: dict[str, Any] | None) -> D:
    """Run the service's composition root once; apply the test's overrides to what it built."""
    deps: Any = spec.bootstrap(kernel) if spec.bootstrap is not None else kernel
    if overrides:
        deps = replace(deps, **overrides)
    return deps  # type: ignore[no-any-return]


def _public_key_problem(kernel: Kernel) -> str | None:
    """Without the gateway's public key every request would be refused: not ready."""
    try:
        verifier_for(kernel.name, str(kernel.settings.home.resolve()))
    except Exception as exc:
        return f"missing: {getattr(exc, 'detail', None) or exc}"
    return None


async def stop_kernel(kernel: Kernel) -> None:
    """Graceful: stop taking work, let in-flight handlers and the relay finish, drain NATS."""
    kernel.stop.set()
    if kernel.tasks:
        await asyncio.wait(kernel.tasks, timeout=10)  # the relay flushes what is pending
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


def stage_audit_head(engine: Engine, service: str, published: int,
                     sign: Callable[[bytes], str] | None = None) -> int:
    """Stage a beacon through the outbox when the chain grew since the last one; `sign`
    (the gateway's key) signs it so its witnesses can tell it from a forgery."""
    with unit_of_work(engine) as session:
        last = audit.head(session)
        length = (last.seq or 0) if last else 0
        if last is None or length == published:
            return published
        event_id = f"{service}-audit-head-{length}"
        if session.get(OutboxMessage, event_id) is None:
            event = AuditHead(service=service, length=length, head_hash=last.hash,
                              at=datetime.now(UTC))
            if sign is not None:
                event = event.model_copy(update={"signature": sign(event.head_message())})
            enqueue(session, event, producer=service, event_id=event_id,
                    subject=AuditHead.subject.format(service=service))
        return length


def _gateway_witness(kernel: Kernel) -> Callable[[Any, Any], None]:
    """Records only heads signed with the gateway's key (the internal-token key pair)."""
    def handle(session: Any, env: Any) -> None:
        verifier = verifier_for(kernel.name, str(kernel.settings.home.resolve()))
        audit_witness.witness_gateway_head(session, env, service=kernel.name,
                                           verify=verifier.verify_detached)
    return handle


async def audit_beacon(kernel: Kernel) -> None:
    """Announce the audit-chain head after every committed append batch (the appends of
    `audit_head_batch_seconds` after the first), so a witness can detect truncation within
    that window; `audit_head_interval_seconds` is only a backstop."""
    appended = Wake()
    appended.bind()
    audit_witness.watch_appends(kernel.engine, appended.set)
    published = -1
    while not kernel.stop.is_set():
        appended.clear()
        try:
            length = await asyncio.to_thread(stage_audit_head, kernel.engine, kernel.name,
                                             published, kernel.head_signer)
            if length != published:
                kernel.relay.wake()
                metrics.AUDIT_LENGTH.labels(kernel.name).set(length)
                published = length
        except Exception as exc:
            log.warning("audit.beacon_failed", error=repr(exc))
        await idle(kernel.stop, kernel.settings.audit_head_interval_seconds, appended)
        if appended.is_set():  # let the batch gather: one head for a burst of appends
            await idle(kernel.stop, kernel.settings.audit_head_batch_seconds)


def server_config(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0,
                  log_level: str = "warning") -> uvicorn.Config:
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 (or
    # FORWARDED_ALLOW_IPS); the gateway decides itself, from its trusted_proxies setting.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                          timeout_graceful_shutdown=15, access_log=False, proxy_headers=False)


class _Server(uvicorn.Server):
    """uvicorn, but a SIGTERM during start-up also ends the start-up's waiting."""

    def handle_exit(self, sig: int, frame: Any) -> None:
        SHUTDOWN_REQUESTED.set()
        super().handle_exit(sig, frame)


def serve(app: FastAPI, *, host: str, port: int, log_level: str = "warning",
          metrics_port: int = 0) -> bool:
    """Run until SIGINT/SIGTERM; uvicorn then runs the lifespan's graceful shutdown.
    False when start-up failed (the reason is logged on one line)."""
    import logging

    from prometheus_client import start_http_server

    SHUTDOWN_REQUESTED.clear()
    # uvicorn logs a failed start-up's traceback; ours already said it in one line.
    logging.getLogger("uvicorn.error").addFilter(_one_line_startup_failures)
    config = server_config(app, host=host, port=port, log_level=log_level)
    server = _Server(config)
    metrics_server = start_http_server(metrics_port, addr=host)[0] if metrics_port else None
    try:
        server.run()
    except SystemExit:  # uvicorn's exit after a failed start-up
        return False
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
    return server.started


def _one_line_startup_failures(record: Any) -> bool:
    return LOGGED_NOTE not in record.getMessage()
