"""Deployment settings of the reports service (environment; the trial rules live in the
protocol's `reports` section).

`TAILOR_RANDOMIZATION_URL`: where unblinded reports ask for the arms (set by `tailor up`).
`TAILOR_REPORTS_METRICS_REFRESH_SECONDS`: how often the gauges are recomputed.
`TAILOR_REPORTS_SIMULATED_CLOCK_FILE`: demos only — the same clock file the notifications
service reads (seconds to add to now), so "today" moves with the demo's compressed weeks.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReportsConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_REPORTS_", extra="ignore")

    metrics_refresh_seconds: float = Field(default=15.0, gt=0)
    randomization_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TAILOR_RANDOMIZATION_URL", "TAILOR_REPORTS_RANDOMIZATION_URL"))
    randomization_timeout_seconds: float = Field(default=10.0, gt=0)
    simulated_clock_file: Path | None = None
