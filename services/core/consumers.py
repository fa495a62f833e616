"""The consumer edge: one bus message = one database transaction.

Parses the envelope tolerantly (unreadable → poison), refuses an event whose producer is
not the owner of the subject it came on (a forgery: poison, counted), records the event id
in the inbox in the
same transaction as the handler's effect (a duplicate has no second effect), commits,
then wakes the outbox relay so any event the handler staged goes out at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import inbox, metrics
from .bus import STREAM, ConsumerSpec
from .bus_contract import Subscription, owner_of
from .db import unit_of_work
from .errors import DomainError, PermanentError
from .events import Envelope
from .settings import SERVICES

log = structlog.get_logger(__name__)

EventHandler = Callable[[Session, Envelope], None]


@dataclass(frozen=True)
class Consumer:
    """A service's subscription: durable name, subjects and a synchronous handler."""

    durable: str
    subjects: tuple[str, ...]
    handle: EventHandler
    max_deliver: int | None = None
    stream: str = STREAM  # TRIAL_DLQ for a consumer of another service's dead letters
    # Runs on the event loop before the transaction (a network call, say), so no database
    # lock is held while it waits; it refuses (PermanentError) or retries like the handler.
    check: Callable[[Envelope], Awaitable[None]] | None = None

    @classmethod
    def on(cls, subscription: Subscription, handle: EventHandler, **options: object) -> Consumer:
        """The consumer of a declared subscription (a service's `SUBSCRIPTIONS`)."""
        return cls(subscription.durable, subscription.subjects, handle,
                   stream=subscription.stream, **options)  # type: ignore[arg-type]

    @property
    def subscription(self) -> Subscription:
        return Subscription(self.durable, self.subjects, self.stream)


def parse_envelope(data: bytes) -> Envelope:
    """Tolerant of fields added later; anything unreadable is a `ContractViolation`."""
    return Envelope.read(data)


def check_producer(env: Envelope, subject: str) -> str | None:
    """Why the event is not its subject owner's (None when it is). A dead letter keeps the
    original event as it was; only the service owning that durable may publish on its
    `trial.dlq.<durable>` subject (bus permissions), so there is nothing more to check."""
    if subject.startswith("trial.dlq."):
        return None
    if env.subject != subject:
        return f"envelope says {env.subject!r} but came on {subject!r}"
    owner = owner_of(subject, SERVICES)
    if owner != env.producer:
        return f"producer {env.producer!r} is not {owner!r}, the owner of {subject!r}"
    return None


def apply_once(engine: Engine, consumer: Consumer, env: Envelope, service: str) -> bool:
    """Run the handler for `env` unless this consumer already did; True if it ran."""
    with structlog.contextvars.bound_contextvars(event_id=env.id, record=env.record,
                                                 correlation_id=env.correlation_id):
        with unit_of_work(engine) as session:
            if not inbox.claim(session, consumer.durable, env.id):
                metrics.DUPLICATES.labels(service, consumer.durable).inc()
                log.info("consumer.duplicate_skipped", consumer=consumer.durable)
                return False
            try:
                consumer.handle(session, env)
            except DomainError as exc:  # the rules refuse this event: retrying cannot help
                raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
        return True


def to_spec(consumer: Consumer, engine: Engine, service: str, *, wake: Callable[[], None],
            default_max_deliver: int) -> ConsumerSpec:
    async def handler(msg: Msg) -> None:
        env = parse_envelope(msg.data)
        forged = check_producer(env, msg.subject)
        if forged is not None:
            metrics.CONSUMER_REFUSED.labels(service, consumer.durable, "producer").inc()
            log.error("consumer.forged_producer", consumer=consumer.durable, event_id=env.id,
                      problem=forged)
            raise PermanentError(f"refused: {forged}")
        if consumer.check is not None:
            await consumer.check(env)
        if await asyncio.to_thread(apply_once, engine, consumer, env, service):
            wake()

    return ConsumerSpec(durable=consumer.durable, subjects=consumer.subjects, handler=handler,
                        max_deliver=consumer.max_deliver or default_max_deliver,
                        stream=consumer.stream)
