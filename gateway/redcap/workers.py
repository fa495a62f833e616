"""Background loops of the REDCap integration, started with the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from services.core.periodic import Wake, every
from services.core.runner import Kernel

from . import metrics, repository, service
from .client import RedcapClient, RedcapRefused, RedcapUnavailable
from .models import RedcapTrigger, RedcapWrite
from .recovery import Recovery
from .settings import RedcapSettings

log = structlog.get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


async def _drain(name: str, kernel: Kernel, due: Callable[[Session], list],
                 work: Callable[..., str], wake: Wake, poll: float,
                 gauge: Callable[[Session], None], parallel: int) -> None:
    """Work through due rows: up to `parallel` at once, one participant's rows in order.

    A lane that frees takes the next due row at once: no row waits for a whole batch to
    finish. The REDCap calls block a thread each, so the lanes have threads of their own:
    on the shared default pool they would starve the DET intake, the consumers and the
    outbox relay, which all run their transactions there."""
    lanes = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix=name)
    loop = asyncio.get_running_loop()
    wake.bind()
    running: dict[asyncio.Future[str], str] = {}  # in flight → its participant

    def due_now() -> list:  # type: ignore[type-arg]
        with Session(kernel.engine) as session:
            found = due(session)
            gauge(session)
            return found

    async def one(item: object) -> str:
        try:
            return await loop.run_in_executor(lanes, work, item)
        finally:
            kernel.relay.wake()

    try:
        while not kernel.stop.is_set():
            wake.clear()  # before reading: a row stored during the read wakes the next pass
            if len(running) < parallel:
                try:
                    # In a worker thread: on SQLite the read may wait behind a writer; the
                    # event loop must keep serving meanwhile.
                    batch = await asyncio.to_thread(due_now)
                except Exception as exc:  # keep the loop alive; the rows stay pending
                    log.exception("redcap.worker_error", error=repr(exc))
                    batch = []
                for item in batch:
                    if len(running) >= parallel:
                        break
                    if item.record in running.values():  # its earlier row is in flight
                        continue
                    running[asyncio.ensure_future(one(item))] = item.record
            waits: set[asyncio.Future[object]] = set(running)  # type: ignore[arg-type]
            helpers = [asyncio.ensure_future(kernel.stop.wait())]
            if len(running) < parallel:  # a free lane: a new row is worth a look
                helpers.append(asyncio.ensure_future(wake.event.wait()))
            await asyncio.wait(waits | set(helpers), timeout=poll,
                                         return_when=asyncio.FIRST_COMPLETED)
            for helper in helpers:
                helper.cancel()
            for task in [t for t in running if t.done()]:
                del running[task]
                if task.exception() is not None:  # the row stays pending for a later pass
                    log.error("redcap.worker_error", error=repr(task.exception()))
    finally:
        if running:
            await asyncio.wait(list(running), timeout=10)
        lanes.shutdown(wait=False)


def _wake_on_staged_writes(engine: Engine, wake: Wake) -> Callable[[OrmSession], None]:
    """The write drain starts a write-back as soon as the transaction staging it commits
    (`service.WRITE_STAGED`), instead of at its next poll. Returns the listener, for removal."""

    def after_commit(session: OrmSession) -> None:
        # `.engine`: a consumed batch's message sessions are bound to its connection.
        if (session.get_bind().engine is engine
                and session.info.pop(service.WRITE_STAGED, False)):
            wake.set()  # thread-safe: commits happen in worker threads

    event.listen(OrmSession, "after_commit", after_commit)
    return after_commit


async def run_workers(kernel: Kernel, settings: RedcapSettings, client: RedcapClient,
                      keys: service.FormKeys, *, trigger_wake: Wake, write_wake: Wake) -> None:
    """The trigger drain, the write drain and the sweep, until the process stops."""
    protocol = kernel.protocol
    recovery = Recovery(kernel.engine, settings.recovery_probe_seconds)

    def observed(outcome: str) -> str:
        if outcome == "retry":
            recovery.failed()
        else:
            recovery.answered(_now())
        return outcome

    def fetch(t: RedcapTrigger) -> str:
        return observed(service.process_trigger(kernel.engine, client, protocol, settings, t,
                                                _now(), keys))

    def write(w: RedcapWrite) -> str:
        return observed(service.perform_write(kernel.engine, client, settings, w, _now()))

    due_triggers = recovery.due("triggers", lambda s: repository.due_triggers(s, _now()),
                                repository.first_waiting_trigger)
    due_writes = recovery.due("writes", lambda s: repository.due_writes(s, _now()),
                              repository.first_waiting_write)
    listener = _wake_on_staged_writes(kernel.engine, write_wake)
    try:
        await asyncio.gather(
            _drain("redcap.triggers", kernel, due_triggers, fetch, trigger_wake,
                   settings.worker_poll_seconds,
                   lambda s: metrics.TRIGGER_BACKLOG.set(repository.pending_count(s, RedcapTrigger)),
                   settings.parallel_requests),
            _drain("redcap.writes", kernel, due_writes, write, write_wake,
                   settings.worker_poll_seconds,
                   lambda s: metrics.SYNC_BACKLOG.set(repository.pending_count(s, RedcapWrite)),
                   settings.parallel_requests),
            _sweeper(kernel, settings, client, trigger_wake, keys, recovery))
    finally:
        event.remove(OrmSession, "after_commit", listener)


async def _sweeper(kernel: Kernel, settings: RedcapSettings, client: RedcapClient,
                   trigger_wake: Wake, keys: service.FormKeys, recovery: Recovery) -> None:
    covered = _now()
    metrics.SWEEP_LAG.set_function(lambda: (_now() - covered).total_seconds())

    async def sweep_once() -> None:
        nonlocal covered
        started = _now()
        try:
            found = await asyncio.to_thread(service.sweep, kernel.engine, client, kernel.protocol,
                                            settings, started, keys)
            await asyncio.to_thread(recovery.answered, _now())
            if found:
                log.info("redcap.sweep_found", forms=found)
                trigger_wake.set()
            covered = started
        except RedcapUnavailable as exc:
            recovery.failed()
            log.warning("redcap.sweep_failed", error=str(exc))
        except RedcapRefused as exc:
            log.warning("redcap.sweep_failed", error=str(exc))

    await every("redcap.sweep", settings.sweep_interval_seconds, sweep_once, stop=kernel.stop)
