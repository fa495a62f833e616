"""Sent outbox rows are transport, not records: they are deleted once older than the
protocol's `data_retention.outbox_sent_days`, so event payloads (personal data among them)
do not pile up at rest. Unsent rows are never touched."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import col

from .db import unit_of_work
from .outbox import OutboxMessage
from .periodic import every

log = structlog.get_logger(__name__)


def purge_sent(engine: Engine, *, older_than: timedelta, now: datetime | None = None) -> int:
    """Delete outbox rows sent before `now - older_than`; returns how many."""
    cutoff = (now or datetime.now(UTC)) - older_than
    with unit_of_work(engine) as session:
        result = session.execute(delete(OutboxMessage).where(
            col(OutboxMessage.sent_at).is_not(None), col(OutboxMessage.sent_at) < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_sent_outbox(engine: Engine, *, keep_days: float, interval_seconds: float,
                            stop: asyncio.Event) -> None:
    """The periodic job: purge at start, then every `interval_seconds` until `stop` (a
    failure, database busy or down, is logged and tried again next round)."""
    def purge() -> None:
        purged = purge_sent(engine, older_than=timedelta(days=keep_days))
        if purged:
            log.info("outbox.purged", rows=purged, keep_days=keep_days)

    await every("outbox.purge", interval_seconds, purge, stop=stop)
