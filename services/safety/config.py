"""Deployment settings of the safety service (environment; trial rules live in the protocol).

`TAILOR_SAFETY_OBLIGATION_CHECK_SECONDS`: how often the obligation watch runs.
`TAILOR_RANDOMIZATION_URL`: where the unblinded report asks for arms (set by `tailor up`).
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SafetyConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_SAFETY_", extra="ignore")

    obligation_check_seconds: float = Field(default=30.0, gt=0)
    randomization_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TAILOR_RANDOMIZATION_URL", "TAILOR_SAFETY_RANDOMIZATION_URL"))
    randomization_timeout_seconds: float = Field(default=10.0, gt=0)
