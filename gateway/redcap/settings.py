"""REDCap connection settings (`TAILOR_REDCAP_…`). The token and the DET secret are secrets:
from the environment or a mounted file, never from the repository, never logged."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.secret_store import configured_secret


class RedcapSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_REDCAP_", extra="ignore")

    api_url: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    det_secret: SecretStr | None = None
    det_secret_file: Path | None = None
    timeout_seconds: float = 10.0
    sweep_interval_seconds: float = 60.0
    sweep_overlap_seconds: float = 120.0
    server_timezone: str = "UTC"  # REDCap compares dateRangeBegin in its server's local time
    worker_poll_seconds: float = 0.2
    parallel_requests: int = 4  # REDCap API calls in flight at once (different participants)
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0

    def api_token(self) -> str | None:
        return configured_secret(self.token.get_secret_value() if self.token else None,
                                 self.token_file, source="TAILOR_REDCAP_TOKEN")

    def trigger_secret(self) -> str | None:
        return configured_secret(self.det_secret.get_secret_value() if self.det_secret else None,
                                 self.det_secret_file, source="TAILOR_REDCAP_DET_SECRET")

    @property
    def enabled(self) -> bool:
        return bool(self.api_url and self.api_token())

