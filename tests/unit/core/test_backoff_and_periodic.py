"""The kernel's one backoff formula and its one periodic-job loop."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from services.core.backoff import backoff_seconds
from services.core.periodic import Wake, every, idle


def test_backoff_is_equal_jitter_between_half_and_all_of_the_capped_step() -> None:
    assert backoff_seconds(1, base=2.0, cap=60.0, rand=lambda: 0.0) == 1.0
    assert backoff_seconds(1, base=2.0, cap=60.0, rand=lambda: 0.999999) < 2.0
    assert backoff_seconds(4, base=2.0, cap=60.0, rand=lambda: 0.0) == 8.0
    assert backoff_seconds(40, base=2.0, cap=60.0, rand=lambda: 0.0) == 30.0
    assert backoff_seconds(10_000, base=2.0, cap=60.0, rand=lambda: 0.999999) < 60.0
    rng = random.Random(3)
    waits = [backoff_seconds(5, base=1.0, cap=100.0, rand=rng.random) for _ in range(200)]
    assert min(waits) >= 8.0 and max(waits) < 16.0 and len(set(waits)) > 100


@pytest.mark.parametrize("attempt, base, cap", [(0, 1.0, 2.0), (1, 0.0, 2.0), (1, 1.0, 0.0)])
def test_backoff_refuses_what_has_no_meaning(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        backoff_seconds(attempt, base=base, cap=cap)


async def test_every_runs_until_stop_logs_failures_and_keeps_going() -> None:
    stop = asyncio.Event()
    runs: list[int] = []

    def job() -> None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("database busy")
        if len(runs) == 4:
            stop.set()

    await asyncio.wait_for(every("test.job", 0.0, job, stop=stop), 10)
    assert runs == [0, 1, 2, 3]  # the failure of the second run did not end the loop


async def test_every_is_woken_from_another_thread_and_ends_on_stop() -> None:
    stop, wake = asyncio.Event(), Wake()
    ran = [asyncio.Event(), asyncio.Event()]
    runs = 0

    async def job() -> None:
        nonlocal runs
        ran[min(runs, 1)].set()
        runs += 1

    task = asyncio.create_task(every("test.woken", 3600.0, job, stop=stop, wake=wake))
    await asyncio.wait_for(ran[0].wait(), 10)
    thread = threading.Thread(target=wake.set)  # as a request's worker thread would
    thread.start()
    thread.join()
    await asyncio.wait_for(ran[1].wait(), 10)  # an hour's interval: only the wake can do it
    stop.set()
    await asyncio.wait_for(task, 10)
    assert runs == 2


async def test_every_runs_again_at_once_while_there_is_more_work() -> None:
    stop = asyncio.Event()
    backlog = [3]

    def drain() -> int:
        if backlog[0] == 0:
            stop.set()
            return 0
        backlog[0] -= 1
        return 1

    await asyncio.wait_for(every("test.drain", 3600.0, drain, stop=stop, again_when=bool), 10)
    assert backlog == [0]


async def test_idle_returns_on_stop() -> None:
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(idle(stop, 3600.0, Wake()), 10)
