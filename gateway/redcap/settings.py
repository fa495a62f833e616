"""REDCap connection settings (`TAILOR_REDCAP_…`). The token and the DET secret are secrets:
from the environment or a mounted file, never from the repository, never logged."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.secret_store import configured_secret


class RedcapSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_REDCAP_", extra="ignore")

    api_url: str | None = Field(default=None, description="REDCap API URL (…/api/)")
    token: SecretStr | None = Field(default=None, description="REDCap API token (secret)")
    token_file: Path | None = Field(default=None, description="file holding the API token")
    det_secret: SecretStr | None = Field(
        default=None, description="Data Entry Trigger secret: `X-Tailor-DET-Secret` header or "
                                  "`?secret=` query parameter (secret)")
    det_secret_file: Path | None = Field(default=None, description="file holding the DET secret")
    required: bool = Field(
        default=False, description="the gateway is not ready (/readyz 503) until REDCap is "
                                   "configured (true in production)")
    timeout_seconds: float = 10.0
    sweep_interval_seconds: float = 60.0
    sweep_overlap_seconds: float = 120.0
    server_timezone: str = "UTC"  # REDCap compares dateRangeBegin in its server's local time
    worker_poll_seconds: float = 0.2
    parallel_requests: int = 4  # REDCap API calls in flight at once (different participants)
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    # While REDCap fails, one waiting row is tried this often whatever its retry delay; the
    # first answer releases the whole backlog, so it drains seconds after REDCap is back.
    recovery_probe_seconds: float = Field(default=2.0, gt=0)
    # Data Entry Triggers accepted per second (a burst, then a rate) over all senders, and
    # refused (wrong secret) per sender address; beyond them 429 (the sweep catches up).
    det_rate_per_second: float = Field(default=50.0, gt=0)
    det_burst: float = Field(default=1000.0, ge=1)
    det_refused_per_second: float = Field(default=0.5, gt=0)
    det_refused_burst: float = Field(default=10.0, ge=1)
    # After a fetch that found nothing new (a replayed DET), the form is fetched again only
    # this long after it: replays cost at most one REDCap export per form per window; a
    # first save or a save right after a changed one is fetched at once (service.py).
    det_coalesce_seconds: float = Field(default=5.0, ge=0)
    # Tailor's own REDCap API account: it reads MPI-D and writes the allocation, so the
    # blinding check of user rights leaves it out (nobody else may log in as it).
    service_username: str = "tailor"
    rights_check_interval_seconds: float = 300.0

    def api_token(self) -> str | None:
        return configured_secret(self.token.get_secret_value() if self.token else None,
                                 self.token_file, source="TAILOR_REDCAP_TOKEN")

    def trigger_secret(self) -> str | None:
        return configured_secret(self.det_secret.get_secret_value() if self.det_secret else None,
                                 self.det_secret_file, source="TAILOR_REDCAP_DET_SECRET")

    @property
    def enabled(self) -> bool:
        return bool(self.api_url and self.api_token())

    def missing(self) -> str | None:
        """What keeps the integration from working, naming the variables; None when set."""
        absent = [name for name, value in (("TAILOR_REDCAP_API_URL", self.api_url),
                                           ("TAILOR_REDCAP_TOKEN[_FILE]", self.api_token()),
                                           ("TAILOR_REDCAP_DET_SECRET[_FILE]", self.trigger_secret()))
                  if not value]
        return f"not configured: {', '.join(absent)}" if absent else None

