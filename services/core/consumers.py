"""The consumer edge: one fetched batch = one database transaction.

Parses each envelope tolerantly (unreadable → poison), refuses an event whose producer is
not the owner of the subject it came on (a forgery: poison, counted), records the event id
in the inbox in the same transaction as the handler's effect (a duplicate has no second
effect), commits, then wakes the outbox relay so any event a handler staged goes out at once.

Each message of a batch runs in its own ORM session. A handler that raises takes back its
own effect and inbox row only, and that message alone is retried or dead-lettered; the
others' effects commit together: the batch then runs again with a savepoint per message
(savepoints cost two statements a message, so a batch without failures goes without). The bus acks after the
commit, so a crash before the ack redelivers messages whose inbox rows are committed: the
redelivery is skipped as a duplicate. What a handler asks to run after its commit
(`after_commit` listeners on its session) runs after the batch's commit, and never for a
message that was rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from . import audit, inbox, metrics
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


Outcome = bool | Exception  # applied, skipped as a duplicate, or what the message failed with


def apply_batch(engine: Engine, consumer: Consumer, envs: Sequence[Envelope],
                service: str) -> list[Outcome]:
    """Apply `envs` in order in one transaction; one outcome per event: True (applied), False
    (a duplicate) or the exception it failed with (nothing of it kept). If the transaction
    itself fails (BEGIN or COMMIT), that raises: nothing is kept.

    Optimistic: the batch first runs without savepoints (two statements fewer a message).
    If a message fails, that transaction is rolled back whole and the batch runs again with
    a savepoint per message, so the failure takes back its own message only; the others'
    handlers run again, as after any rolled-back transaction."""
    try:
        outcomes = _apply_all(engine, consumer, envs, savepoints=False)
    except _MessageFailed as failed:
        if len(envs) == 1:  # its transaction was its savepoint
            outcomes = [failed.outcome]
        else:
            outcomes = _apply_all(engine, consumer, envs, savepoints=True)
    for env, outcome in zip(envs, outcomes, strict=True):
        if outcome is False:
            metrics.DUPLICATES.labels(service, consumer.durable).inc()
            log.info("consumer.duplicate_skipped", consumer=consumer.durable, event_id=env.id)
    return outcomes


class _MessageFailed(Exception):
    """A message failed in a batch run without savepoints: the batch's transaction is lost."""

    def __init__(self, outcome: Exception) -> None:
        super().__init__(repr(outcome))
        self.outcome = outcome


def _apply_all(engine: Engine, consumer: Consumer, envs: Sequence[Envelope], *,
               savepoints: bool) -> list[Outcome]:
    outcomes: list[Outcome] = []
    applied: list[Session] = []
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            for env in envs:
                outcome = _apply_one(conn, consumer, env, applied, savepoint=savepoints)
                if isinstance(outcome, Exception) and not savepoints:
                    raise _MessageFailed(outcome)
                outcomes.append(outcome)
            transaction.commit()
        except BaseException:
            for session in applied:
                session.close()
            raise
        # Committed: now each session's own commit, which runs its `after_commit` listeners
        # (its transaction joined ours for rollback only, so this commits nothing itself).
        for session in applied:
            session.commit()
            session.close()
    return outcomes


def _apply_one(conn: Connection, consumer: Consumer, env: Envelope, applied: list[Session],
               *, savepoint: bool) -> Outcome:
    with structlog.contextvars.bound_contextvars(event_id=env.id, record=env.record,
                                                 correlation_id=env.correlation_id):
        nested = conn.begin_nested() if savepoint else None
        # A session of its own, as if the message had its own transaction: its identity
        # map, `info` and listeners die with it if it fails. It joins the batch's
        # transaction (or the message's savepoint) for rollback only.
        session = Session(bind=conn, join_transaction_mode="rollback_only",
                          expire_on_commit=False)
        head = audit.appended_head(applied[-1]) if applied else None
        try:
            if head is not None:  # the audit chain goes on from the last applied message
                audit.continue_chain(session, head)
            fresh = inbox.claim(session, consumer.durable, env.id)
            if fresh:
                consumer.handle(session, env)
            session.flush()
        except Exception as exc:
            session.rollback()  # the savepoint, or without one the batch's transaction
            session.close()
            if nested is not None and nested.is_active:
                nested.rollback()
            if isinstance(exc, DomainError):  # the rules refuse this event: retrying cannot help
                refused = PermanentError(f"{type(exc).__name__}: {exc}")
                refused.__cause__ = exc
                return refused
            return exc
        if nested is not None:
            nested.commit()
        if not fresh:
            session.close()
            return False
        applied.append(session)
        return True


def to_spec(consumer: Consumer, engine: Engine, service: str, *, wake: Callable[[], None],
            default_max_deliver: int) -> ConsumerSpec:
    async def admit(msg: Msg) -> Envelope:
        """The event of `msg` if it may be applied: readable, its owner's, and checked."""
        env = parse_envelope(msg.data)
        forged = check_producer(env, msg.subject)
        if forged is not None:
            metrics.CONSUMER_REFUSED.labels(service, consumer.durable, "producer").inc()
            log.error("consumer.forged_producer", consumer=consumer.durable, event_id=env.id,
                      problem=forged)
            raise PermanentError(f"refused: {forged}")
        if consumer.check is not None:
            await consumer.check(env)
        return env

    async def handler(msg: Msg) -> None:
        env = await admit(msg)
        if await asyncio.to_thread(apply_once, engine, consumer, env, service):
            wake()

    async def batch_handler(msgs: list[Msg]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(msgs)
        admitted: list[tuple[int, Envelope]] = []
        for i, msg in enumerate(msgs):
            try:
                admitted.append((i, await admit(msg)))
            except Exception as exc:
                outcomes[i] = exc
        if not admitted:
            return outcomes
        results = await asyncio.to_thread(apply_batch, engine, consumer,
                                          [env for _, env in admitted], service)
        for (i, _), result in zip(admitted, results, strict=True):
            if isinstance(result, Exception):
                outcomes[i] = result
        if any(result is True for result in results):
            wake()
        return outcomes

    return ConsumerSpec(durable=consumer.durable, subjects=consumer.subjects, handler=handler,
                        max_deliver=consumer.max_deliver or default_max_deliver,
                        stream=consumer.stream, batch_handler=batch_handler)
