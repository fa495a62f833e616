"""Background loops of the REDCap integration, started with the gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
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
    """Work through due rows: several participants at once, one participant's rows in order;
    the next batch at once after a non-empty one, else after `poll` or a wake. A failed
    round is logged and the row stays pending."""
    lanes = asyncio.Semaphore(parallel)

    async def lane(items: list) -> None:  # type: ignore[type-arg]
        async with lanes:
            for item in items:
                if kernel.stop.is_set():
                    return
                await asyncio.to_thread(work, item)
                kernel.relay.wake()

    def due_now() -> list:  # type: ignore[type-arg]
        with Session(kernel.engine) as session:
            found = due(session)
            gauge(session)
            return found

    async def one_round() -> int:
        # In a worker thread: on SQLite the read begins with BEGIN IMMEDIATE and may wait
        # out the busy timeout behind a writer; the event loop must keep serving meanwhile.
        batch = await asyncio.to_thread(due_now)
        by_record: dict[str, list] = {}  # type: ignore[type-arg]
        for item in batch:
            by_record.setdefault(item.record, []).append(item)
        await asyncio.gather(*(lane(items) for items in by_record.values()))
        return len(batch)

    await every(name, poll, one_round, stop=kernel.stop, wake=wake, again_when=bool)


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
