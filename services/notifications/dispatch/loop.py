"""Background jobs of the notifications service (ServiceSpec.background; each receives the
service's `Runtime`).

`dispatcher`: settles expired claims, picks due messages, claims each one in the
database before any side effect, sends it and records the outcome. Several sends run at
once (bounded); a graceful stop lets in-flight sends finish.
`housekeeping`: extends diary prompts ahead in batches and refreshes the gauges.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import partial

import aiosmtplib
import structlog
from sqlmodel import Session

from services.core.db import unit_of_work
from services.core.periodic import every

from .. import repository
from ..diary import extend_diary
from ..runtime import Runtime
from . import steps
from .channels import EmailChannel, SmsChannel, error_summary
from .metrics import BACKLOG, DIARY_ADHERENCE, DIARY_SENT

log = structlog.get_logger(__name__)


class Dispatcher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.engine = rt.kernel.engine
        contact = rt.protocol.reminders.messages.contact.email
        self.email = EmailChannel(rt.settings, rt.settings.mail_from or contact)
        self.sms = SmsChannel(rt.settings)
        self.inflight: set[str] = set()
        self._slots = asyncio.Semaphore(max(1, rt.settings.dispatch_concurrency))

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until stop: at once while batches come back full, else after the poll
        interval or a wake; a failed round (database busy or gone) waits for the next."""
        try:
            await every("dispatch.round", self.rt.settings.dispatch_poll_seconds,
                        self.run_once, stop=stop, wake=self.rt.wake_signal, again_when=bool)
        finally:
            await self.email.close()
            await self.sms.close()

    async def run_once(self) -> bool:
        """One round; True when the batch was full (more may be due at once)."""
        batch = self.rt.settings.dispatch_batch
        await asyncio.to_thread(steps.recover, self.engine, self.rt, set(self.inflight))
        due = await asyncio.to_thread(steps.due, self.engine, self.rt, batch, set(self.inflight))
        if due:
            await asyncio.gather(*(self._guarded(key, channel) for key, channel in due))
        return len(due) >= batch

    async def _guarded(self, key: str, channel: str) -> None:
        async with self._slots:
            self.inflight.add(key)
            try:
                await self.dispatch(key, channel)
            except Exception as exc:
                log.warning("dispatch.message_failed", key=key, error=error_summary(exc))
            finally:
                self.inflight.discard(key)

    async def dispatch(self, key: str, channel: str) -> None:
        """Claim, send, record. A crash after the claim leaves a lease to `steps.recover`."""
        conn: aiosmtplib.SMTP | None = None
        if channel == "email":  # connect first: the claim-to-send window stays short
            conn = await self.email.acquire()
        try:
            claimed = await asyncio.to_thread(steps.claim, self.engine, self.rt, key)
            if claimed is None:
                return
            limit = self.rt.settings.lease_seconds / 2  # always settled before the lease ends
            try:
                async with asyncio.timeout(limit):
                    if channel == "email":  # a failed send closes the connection
                        receipt, conn = await self.email.send(claimed.outgoing, conn)
                    else:
                        receipt = await self.sms.send(claimed.outgoing)
            except Exception as exc:
                await asyncio.to_thread(steps.record_failure, self.engine, self.rt, key,
                                        claimed, exc)
                return
            await asyncio.to_thread(steps.record_sent, self.engine, self.rt, key, claimed,
                                    receipt)
        finally:
            if channel == "email":
                self.email.release(conn)

async def dispatcher(rt: Runtime) -> None:
    await Dispatcher(rt).run(rt.kernel.stop)


# ── housekeeping: diary batches and gauges ─────────────────────────────────────────
def extend_diaries(rt: Runtime) -> int:
    created = 0
    with Session(rt.kernel.engine) as session:
        records = [p.record for p in repository.diary_participants(
            session, rt.protocol.diary_policy.days)]
    for record in records:
        with unit_of_work(rt.kernel.engine) as session:
            participant = repository.participant(session, record)
            if participant is not None:
                created += extend_diary(session, rt, participant, rt.now())
    if created:
        rt.wake()
    return created


def refresh_gauges(rt: Runtime) -> None:
    now = rt.now()
    with Session(rt.kernel.engine) as session:
        BACKLOG.set(repository.backlog(session, now))
        prompts = repository.recent_prompts(session, now - timedelta(days=7), now)
    due = [p for p in prompts if p.state != "scheduled"]
    sent = [p for p in due if p.state in repository.LEFT_US]
    answered = [p for p in sent if p.answered_at is not None
                and (p.expires_at is None or p.answered_at < p.expires_at)]
    DIARY_SENT.set(len(sent) / len(due) if due else 0.0)
    DIARY_ADHERENCE.set(len(answered) / len(sent) if sent else 0.0)


async def housekeeping(rt: Runtime) -> None:
    stop, settings = rt.kernel.stop, rt.settings
    await asyncio.gather(
        every("notifications.diary", settings.diary_interval_seconds, partial(extend_diaries, rt),
              stop=stop),
        every("notifications.gauges", settings.gauge_interval_seconds,
              partial(refresh_gauges, rt), stop=stop))
