"""Transactional outbox: the event to publish is written in the same transaction as the
state change; the relay publishes pending rows with `Nats-Msg-Id` = row id and marks
them sent only after JetStream acknowledged them. A crash between the two republishes;
the server's duplicate window and the consumers' inbox make that harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy import Column, Text, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select, update

from .db import UtcDateTime, unit_of_work
from .events import Envelope, Event

log = structlog.get_logger(__name__)


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: str = Field(primary_key=True)
    subject: str
    envelope: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True))
    position: int | None = Field(default=None, index=True)


def enqueue(
    session: Session,
    event: Event,
    *,
    producer: str,
    correlation_id: str | None = None,
    record: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
) -> Envelope:
    """Stage `event` for publication in the caller's transaction."""
    env = Envelope(subject=subject or event.subject, producer=producer,
                   correlation_id=correlation_id, record=record,
                   data=event.model_dump(mode="json"), **({"id": event_id} if event_id else {}))
    session.add(OutboxMessage(id=env.id, subject=env.subject, envelope=env.model_dump_json(),
                              created_at=env.occurred_at, position=_next_position(session)))
    session.info["outbox_staged"] = True  # the edge wakes the relay after commit only then
    return env


def staged(session: Session) -> bool:
    """Did this unit of work stage an event? (read by the edge after commit)"""
    return bool(session.info.get("outbox_staged"))


def _next_position(session: Session) -> int:
    # Publication order = commit order within a service; a plain counter keeps it explicit
    # on every database (timestamps can tie).
    current = session.exec(select(func.max(OutboxMessage.position))).one()
    return (current or 0) + 1


def backlog(session: Session) -> int:
    return session.exec(
        select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.sent_at).is_(None))
    ).one()


Publish = Callable[[str, bytes, str], Awaitable[object]]


class OutboxRelay:
    """Publishes pending outbox rows in order. One per service process; replicas are
    safe because a republished row is dropped by the server's duplicate window."""

    def __init__(self, engine: Engine, publish: Publish, *, batch: int = 200,
                 poll_seconds: float = 0.5, on_backlog: Callable[[int], None] | None = None):
        self._engine = engine
        self._publish = publish
        self._batch = batch
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._on_backlog = on_backlog or (lambda _n: None)

    def wake(self) -> None:
        """Called after a commit that staged events: publish now rather than at the next poll."""
        self._wake.set()

    def pending(self) -> list[OutboxMessage]:
        with Session(self._engine) as session:
            self._on_backlog(backlog(session))
            return list(session.exec(
                select(OutboxMessage).where(col(OutboxMessage.sent_at).is_(None))
                .order_by(col(OutboxMessage.position)).limit(self._batch)
            ))

    def mark_sent(self, ids: list[str]) -> None:
        with unit_of_work(self._engine) as session:
            session.exec(update(OutboxMessage).where(col(OutboxMessage.id).in_(ids))  # type: ignore[call-overload]
                         .values(sent_at=datetime.now(UTC)))

    async def publish_rows(self, rows: list[OutboxMessage]) -> None:
        await asyncio.gather(*(self._publish(r.subject, r.envelope.encode(), r.id) for r in rows))

    async def relay_once(self) -> int:
        rows = await asyncio.to_thread(self.pending)
        if rows:
            await self.publish_rows(rows)
            await asyncio.to_thread(self.mark_sent, [r.id for r in rows])
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                sent = await self.relay_once()
            except Exception as exc:  # bus down, database busy: retry at the next poll
                log.warning("outbox.relay_failed", error=repr(exc))
                sent = 0
                await asyncio.sleep(self._poll)
            if sent:
                continue
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=self._poll,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
        await self.flush()

    async def flush(self) -> None:
        """Publish what is pending (used on graceful shutdown); best effort."""
        try:
            while await self.relay_once():
                pass
        except Exception as exc:
            log.warning("outbox.flush_incomplete", error=repr(exc))
