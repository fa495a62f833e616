"""The obligation watch: a background job of the safety service, and its metrics.

Every `TAILOR_SAFETY_OBLIGATION_CHECK_SECONDS` it escalates unacknowledged obligations at
the protocol's fraction of their clock (once each), marks overdue ones, and publishes:

- `tailor_safety_oldest_open_obligation_timestamp_seconds`: deadline (epoch seconds) of
  the most urgent unsent obligation, NaN when there is none; alert on
  `time() > tailor_safety_oldest_open_obligation_timestamp_seconds` (NaN never fires);
- `tailor_safety_obligations{status}`: obligations by current status;
- `tailor_safety_obligation_escalations_total`, `tailor_safety_obligations_overdue_total`.

Labels never carry a participant, arm or cluster.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter, Gauge

from services.core.db import unit_of_work

from .service import Sweep, sweep_obligations

if TYPE_CHECKING:
    from services.core.runner import Kernel

log = structlog.get_logger(__name__)

OLDEST_OPEN = Gauge(
    "tailor_safety_oldest_open_obligation_timestamp_seconds",
    "Deadline of the most urgent unsent reporting obligation (epoch seconds; NaN if none)")
OBLIGATIONS = Gauge("tailor_safety_obligations", "Reporting obligations by current status",
                    ["status"])
ESCALATIONS = Counter("tailor_safety_obligation_escalations_total",
                      "Obligations escalated because nobody acknowledged them in time")
OVERDUE = Counter("tailor_safety_obligations_overdue_total",
                  "Obligations that passed their deadline unsent")


def run_sweep(kernel: Kernel) -> Sweep:
    """One pass in one transaction; metrics are set only after it committed."""
    with unit_of_work(kernel.engine) as session:
        sweep = sweep_obligations(session, now=kernel.extras["now"]())
    OLDEST_OPEN.set(sweep.oldest_deadline.timestamp() if sweep.oldest_deadline else math.nan)
    for status, n in sweep.by_status.items():
        OBLIGATIONS.labels(status).set(n)
    ESCALATIONS.inc(len(sweep.escalated))
    OVERDUE.inc(len(sweep.overdue))
    if sweep.escalated or sweep.overdue:
        log.warning("safety.obligations_swept", escalated=len(sweep.escalated),
                    overdue=len(sweep.overdue))
    return sweep


async def watch_obligations(kernel: Kernel) -> None:
    interval = kernel.extras["config"].obligation_check_seconds
    while not kernel.stop.is_set():
        try:
            sweep = await asyncio.to_thread(run_sweep, kernel)
            if sweep.escalated:
                kernel.relay.wake()
        except Exception as exc:  # database busy or gone: try again at the next tick
            log.warning("safety.obligation_watch_failed", error=repr(exc))
        try:
            await asyncio.wait_for(kernel.stop.wait(), interval)
        except TimeoutError:
            pass
