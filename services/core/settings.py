"""Process settings from the environment (prefix `TAILOR_`).

Global settings are `TAILOR_<NAME>`; a service's own are `TAILOR_<SERVICE>_<NAME>`
(e.g. `TAILOR_RANDOMIZATION_DATABASE_URL`). Secrets are never defaults.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .protocol import TrialProtocol, load_protocol

SERVICES = ("allocation", "randomization", "notifications", "safety", "reports", "gateway")


class Settings(BaseSettings):
    """Settings shared by every process of the local stack."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore")

    home: Path = Field(default=Path(".tailor"), description="state folder of the embedded stack")
    protocol_file: Path = Path("protocols/perpain-pilot.yaml")
    nats_url: str = "nats://127.0.0.1:4222"
    log_level: str = "info"
    log_json: bool = True
    migrate_on_start: bool = True
    outbox_poll_seconds: float = 0.5
    outbox_purge_interval_seconds: float = 3600.0  # how often sent rows past retention go
    audit_head_interval_seconds: float = 60.0  # backstop: heads go out after each append batch
    audit_head_batch_seconds: float = 0.5  # appends this close together share one head
    duplicate_window_seconds: float = 300.0
    max_deliver: int = 8
    # The bus: this process's NKey seed, and TLS (a CA to verify the server; a client
    # certificate only where the server asks for one).
    nats_creds_file: Path | None = None
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None

    def protocol(self) -> TrialProtocol:
        return load_protocol(self.protocol_file)

    def nats_credentials(self, service: str) -> Path | None:
        """`TAILOR_NATS_CREDS_FILE`, else the embedded stack's seed for `service` under
        `<home>/nats/auth` (written by the local stack when it starts nats-server)."""
        if self.nats_creds_file is not None:
            return self.nats_creds_file
        embedded = self.home / "nats" / "auth" / f"{service}.nk"
        return embedded if embedded.exists() else None

    def nats_tls(self) -> tuple[Path | None, Path | None, Path | None] | None:
        """(ca, cert, key) when TLS is configured, or the embedded stack's CA if it made one."""
        files = (self.nats_tls_ca_file, self.nats_tls_cert_file, self.nats_tls_key_file)
        if any(files):
            return files
        embedded = self.home / "nats" / "auth" / "tls" / "ca.pem"
        return (embedded, None, None) if embedded.exists() else None


class ServiceSettings(BaseSettings):
    """One service's own settings; read with `service_settings(name)`."""

    model_config = SettingsConfigDict(extra="ignore")

    name: str
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def resolved_database_url(self, home: Path) -> str:
        if self.database_url:
            return self.database_url
        home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(home / f'{self.name}.db').resolve()}"


@lru_cache
def settings() -> Settings:
    return Settings()


def service_settings(name: str) -> ServiceSettings:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    cls = type(
        f"{name.title()}Settings",
        (ServiceSettings,),
        {"model_config": SettingsConfigDict(env_prefix=f"TAILOR_{name.upper()}_", extra="ignore")},
    )
    return cls(name=name)
