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

import math
from functools import partial

import structlog
from prometheus_client import Counter, Gauge

from services.core.db import unit_of_work
from services.core.periodic import every

from .bootstrap import SafetyDeps
from .service import Sweep, sweep_obligations

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


def run_sweep(deps: SafetyDeps) -> Sweep:
    """One pass in one transaction; metrics are set only after it committed. Escalations
    staged events: the relay is woken to publish them at once."""
    with unit_of_work(deps.kernel.engine) as session:
        sweep = sweep_obligations(session, now=deps.now())
    OLDEST_OPEN.set(sweep.oldest_deadline.timestamp() if sweep.oldest_deadline else math.nan)
    for status, n in sweep.by_status.items():
        OBLIGATIONS.labels(status).set(n)
    ESCALATIONS.inc(len(sweep.escalated))
    OVERDUE.inc(len(sweep.overdue))
    if sweep.escalated or sweep.overdue:
        log.warning("safety.obligations_swept", escalated=len(sweep.escalated),
                    overdue=len(sweep.overdue))
    if sweep.escalated:
        deps.kernel.relay.wake()
    return sweep


async def watch_obligations(deps: SafetyDeps) -> None:
    await every("safety.obligation_watch", deps.config.obligation_check_seconds,
                partial(run_sweep, deps), stop=deps.kernel.stop)
