"""Prometheus gauges of the trial's progress: totals and rates only, never a participant id,
an arm, a module or a cluster in a label or a value."""

from __future__ import annotations

from functools import partial

import structlog
from prometheus_client import Gauge

from services.core.db import unit_of_work
from services.core.periodic import every

from . import service
from .bootstrap import ReportsDeps

log = structlog.get_logger(__name__)

RANDOMIZED = Gauge("tailor_reports_randomized", "Participants randomized so far")
RECRUITMENT_RATE = Gauge("tailor_reports_recruitment_rate_per_week",
                         "Randomized per week (overall since the start, or the recent window)",
                         ["window"])
RETENTION = Gauge("tailor_reports_retention_ratio",
                  "Completed of due assessments per timepoint", ["timepoint"])
DIARY_ADHERENCE = Gauge("tailor_reports_diary_adherence_ratio",
                        "Diary prompts answered in time of those sent, all weeks, pooled")


def refresh(deps: ReportsDeps) -> None:
    kernel, today = deps.kernel, deps.now().date()
    with unit_of_work(kernel.engine) as session:
        r = service.recruitment_of(session, protocol=kernel.protocol, as_of=today)
        kept = service.retention_of(session, protocol=kernel.protocol, as_of=today)
        accepted = service.acceptability_of(session, protocol=kernel.protocol, as_of=today)
    RANDOMIZED.set(r.randomized)
    RECRUITMENT_RATE.labels("overall").set(r.rate_per_week or 0)
    RECRUITMENT_RATE.labels("recent").set(r.recent_rate_per_week or 0)
    for t in kept.timepoints:
        if t.completion_rate is not None:
            RETENTION.labels(t.timepoint).set(t.completion_rate)
    if accepted.diary_adherence is not None:
        DIARY_ADHERENCE.set(accepted.diary_adherence)


async def keep_gauges_fresh(deps: ReportsDeps) -> None:
    await every("reports.gauges", deps.config.metrics_refresh_seconds, partial(refresh, deps),
                stop=deps.kernel.stop)
