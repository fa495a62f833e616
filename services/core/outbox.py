"""Transactional outbox: the event to publish is written in the same transaction as the
state change; the relay publishes pending rows with `Nats-Msg-Id` = row id and marks
them sent only after JetStream acknowledged them. A crash between the two republishes;
the server's duplicate window and the consumers' inbox make that harmless.

Order guarantee: each row gets a `position` when it is staged (a database sequence on
PostgreSQL; on SQLite, whose writers are serialised, the next number under the write
lock). If transaction B staged its event after transaction A committed — in particular
two transactions about the same record, which serialise on that record's rows — B's
position is higher, and the relay publishes A's event first: it publishes one row at a
time in position order and stops at the first failure, so a retry never overtakes a
row that failed. Events of transactions that overlapped have no defined order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol
from uuid import uuid4

import structlog
from sqlalchemy import Column, Integer, Sequence, Text, bindparam, func, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from .db import UtcDateTime
from .events import Envelope, Event
from .periodic import Wake, every

log = structlog.get_logger(__name__)


POSITION_SEQUENCE = Sequence("outbox_message_position_seq")


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: str = Field(primary_key=True)
    subject: str
    envelope: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    sent_at: datetime | None = Field(
        default=None, sa_column=Column(UtcDateTime(), nullable=True, index=True))
    # On PostgreSQL the sequence fills it (a value omitted from the INSERT); SQLite has
    # no sequences, `enqueue` numbers the row there.
    position: int | None = Field(default=None, sa_column=Column(
        Integer, POSITION_SEQUENCE, nullable=True, index=True))


_TABLE = OutboxMessage.__table__  # type: ignore[attr-defined]
_INSERT = insert(_TABLE)
# SQLite has no sequences: MAX+1 is safe because one writer holds the database at a time
# (BEGIN IMMEDIATE). Not on PostgreSQL, where two concurrent transactions would get the same.
_INSERT_NUMBERED = insert(_TABLE).values(
    position=select(func.coalesce(func.max(_TABLE.c.position), 0) + 1).scalar_subquery())


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
    env = Envelope(id=event_id or uuid4().hex, subject=subject or event.subject,
                   producer=producer, correlation_id=correlation_id, record=record,
                   data=event.model_dump(mode="json"))
    row = {"id": env.id, "subject": env.subject, "envelope": env.model_dump_json(),
           "created_at": env.occurred_at}
    # A Core insert, run now: no ORM object to build and flush at commit. The position
    # comes with it: the sequence's next value, or on SQLite MAX+1 in the same statement.
    sqlite = session.get_bind().dialect.name == "sqlite"
    session.connection().execute(_INSERT_NUMBERED if sqlite else _INSERT, row)
    session.info["outbox_staged"] = True  # the edge wakes the relay after commit only then
    return env


def staged(session: Session) -> bool:
    """Did this unit of work stage an event? (read by the edge after commit)"""
    return bool(session.info.get("outbox_staged"))


def backlog(session: Session) -> int:
    return session.exec(
        select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.sent_at).is_(None))
    ).one()


Publish = Callable[[str, bytes, str], Awaitable[object]]


class Pending(Protocol):
    """What the relay reads of a pending row."""

    id: str
    subject: str
    envelope: str


_BACKLOG = select(func.count()).select_from(_TABLE).where(_TABLE.c.sent_at.is_(None))
_MARK_SENT = (update(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
              .values(sent_at=bindparam("now")))


class PartialPublish(Exception):
    """Publishing stopped at a failed row; `published` went out before it."""

    def __init__(self, published: list[str], cause: Exception) -> None:
        super().__init__(f"published {len(published)} rows, then: {cause!r}")
        self.published = published
        self.cause = cause


class OutboxRelay:
    """Publishes pending outbox rows in order. One per service process; replicas are
    safe because a republished row is dropped by the server's duplicate window."""

    def __init__(self, engine: Engine, publish: Publish, *, batch: int = 200,
                 poll_seconds: float = 0.5, on_backlog: Callable[[int], None] | None = None):
        self._engine = engine
        self._publish = publish
        self._batch = batch
        self._pending = (select(_TABLE.c.id, _TABLE.c.subject, _TABLE.c.envelope)
                         .where(_TABLE.c.sent_at.is_(None)).order_by(_TABLE.c.position)
                         .limit(batch))
        self._poll = poll_seconds
        self._wake = Wake()
        self._on_backlog = on_backlog or (lambda _n: None)

    def wake(self) -> None:
        """Called after a commit that staged events: publish now rather than at the next poll.
        Safe from any thread (request handlers and consumers commit in worker threads)."""
        self._wake.set()

    def pending(self) -> list[Pending]:
        # Plain rows through Core, the statement built once: this runs once per relay pass.
        with self._engine.connect() as conn:
            rows: list[Pending] = list(conn.execute(self._pending))  # type: ignore[arg-type]
            # A short page is the whole backlog (same snapshot): count only a full one.
            self._on_backlog(len(rows) if len(rows) < self._batch
                             else conn.execute(_BACKLOG).scalar_one())
            return rows

    def mark_sent(self, ids: list[str]) -> None:
        with self._engine.begin() as conn:
            conn.execute(_MARK_SENT, {"ids": ids, "now": datetime.now(UTC)})

    async def publish_rows(self, rows: Iterable[Pending]) -> list[str]:
        """Publish in position order, one at a time; returns the ids published before the
        first failure, which is then raised (no later row goes out before it)."""
        done: list[str] = []
        for row in rows:
            try:
                await self._publish(row.subject, row.envelope.encode(), row.id)
            except Exception as exc:
                raise PartialPublish(done, exc) from exc
            done.append(row.id)
        return done

    async def relay_once(self) -> int:
        rows = await asyncio.to_thread(self.pending)
        if not rows:
            return 0
        try:
            done = await self.publish_rows(rows)
        except PartialPublish as partial:
            if partial.published:
                await asyncio.to_thread(self.mark_sent, partial.published)
            raise partial.cause from None
        await asyncio.to_thread(self.mark_sent, done)
        return len(done)

    async def run(self, stop: asyncio.Event) -> None:
        # A pass that sent something is followed at once by the next (a backlog drains
        # without waiting); a failed pass (bus down, database busy) waits for the next poll.
        await every("outbox.relay", self._poll, self.relay_once, stop=stop, wake=self._wake,
                    again_when=bool)
        await self.flush()

    async def flush(self) -> None:
        """Publish what is pending (used on graceful shutdown); best effort."""
        try:
            while await self.relay_once():
                pass
        except Exception as exc:
            log.warning("outbox.flush_incomplete", error=repr(exc))
