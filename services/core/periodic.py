"""The one way a process waits and repeats: `idle` (until a timeout, a wake or stop) and
`every` (a job run every N seconds until stop, wake-able, its failures logged and run
again at the next round). `Wake` is the wake signal any thread may raise."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], object] | Callable[[], Awaitable[object]]


class Wake:
    """An event that code on worker threads may set: `asyncio.Event.set` is not thread-safe,
    so a set from another thread goes through the loop's `call_soon_threadsafe`. The loop is
    the one it was made on, else the one that first waits on it (or `bind`)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside a loop (at import, in a test): bound on first wait
            self._loop = None

    def bind(self) -> None:
        """Tie it to the running loop (the waiting side calls this before any thread sets it)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    def set(self) -> None:
        loop = self._loop
        if loop is None:  # nobody waits yet: the next wait sees it
            self.event.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.event.set()
        elif not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self.event.set)
            except RuntimeError:  # the loop closed meanwhile: the process is stopping
                pass

    def clear(self) -> None:
        self.event.clear()

    def is_set(self) -> bool:
        return self.event.is_set()


async def idle(stop: asyncio.Event, seconds: float, wake: Wake | asyncio.Event | None = None) -> None:
    """Return after `seconds`, or at once when `stop` (or `wake`) is set."""
    if isinstance(wake, Wake):
        wake.bind()
        event: asyncio.Event | None = wake.event
    else:
        event = wake
    waiters = [asyncio.ensure_future(stop.wait())]
    if event is not None:
        waiters.append(asyncio.ensure_future(event.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def every(name: str, seconds: float | Callable[[], float], job: Job, *,
                stop: asyncio.Event, wake: Wake | None = None, in_thread: bool = True,
                again_when: Callable[[object], bool] | None = None) -> None:
    """Run `job` now and then every `seconds` until `stop` is set.

    A synchronous job runs in a worker thread (`in_thread`), so a database call never blocks
    the loop. A failure is logged as `<name>_failed` and the job runs again at the next round;
    it never ends the loop. `wake` (cleared before each run, so a wake during a run is kept
    for the next) starts the next round early. When `again_when(result)` is true the next
    round starts at once: there is more work than one run takes."""
    if wake is not None:
        wake.bind()
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        result: object = None
        try:
            if inspect.iscoroutinefunction(job):
                result = await job()
            else:
                result = await asyncio.to_thread(job) if in_thread else job()
                if inspect.isawaitable(result):  # a callable that returned a coroutine
                    result = await result
        except Exception as exc:
            log.warning(f"{name}_failed", error=repr(exc))
            result = None
        if again_when is not None and again_when(result):
            continue
        await idle(stop, seconds() if callable(seconds) else seconds, wake)
