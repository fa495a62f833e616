"""Process settings from the environment (prefix `TAILOR_`).

Global settings are `TAILOR_<NAME>`; a service's own are `TAILOR_<SERVICE>_<NAME>`
(e.g. `TAILOR_RANDOMIZATION_DATABASE_URL`). Secrets are never defaults.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .db import normalise_database_url
from .protocol import TrialProtocol, load_protocol

SERVICES = ("allocation", "randomization", "notifications", "safety", "reports", "gateway")
PROTOCOL_NAME = "perpain-pilot.yaml"


def default_protocol_file() -> Path:
    """`protocols/perpain-pilot.yaml` of the working folder (a checkout), else the copy
    installed with the package."""
    local = Path("protocols") / PROTOCOL_NAME
    spec = importlib.util.find_spec("protocols")
    if local.exists() or spec is None or not spec.submodule_search_locations:
        return local
    return Path(next(iter(spec.submodule_search_locations))) / PROTOCOL_NAME


class Settings(BaseSettings):
    """Settings shared by every process of the local stack."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_", extra="ignore")

    home: Path = Field(default=Path(".tailor"), description="state folder of the embedded stack")
    protocol_file: Path = Field(default_factory=default_protocol_file,
                                description="the trial protocol (relative paths inside it "
                                            "are taken from its folder)")
    nats_url: str = Field(default="nats://127.0.0.1:4222",
                          description="NATS server(s), comma-separated; never logged with a password")
    nats_connect_attempts: int = Field(
        default=10, ge=1, description="connection attempts at start-up before the process exits")
    nats_stream_replicas: int = Field(
        default=1, ge=1, le=5, description="JetStream replicas of the TRIAL and TRIAL_DLQ "
                                           "streams (3 on a 3-node cluster)")
    nats_stream_max_bytes: int = Field(
        default=-1, ge=-1, description="size limit of the TRIAL stream in bytes (-1: none); "
                                       "when full, new publishes are refused, nothing is dropped")
    log_level: str = Field(default="info", description="debug, info, warning or error")
    log_json: bool = Field(default=True, description="JSON log lines (false: console format)")
    access_log: bool = Field(default=True, description="one log line per HTTP request "
                                                       "(method, route, status, duration)")
    migrate_on_start: bool = Field(
        default=True, description="apply migrations at start-up (false in Kubernetes: a Job does)")
    db_pool_size: int = Field(default=5, ge=1, description="PostgreSQL connections kept per process")
    db_max_overflow: int = Field(default=5, ge=0,
                                 description="extra PostgreSQL connections allowed at peaks")
    metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="serve /metrics on this port only (0: on the service's own port)")
    outbox_poll_seconds: float = Field(default=0.5, gt=0)
    outbox_purge_interval_seconds: float = Field(
        default=3600.0, gt=0, description="how often sent outbox rows past retention are deleted")
    audit_head_interval_seconds: float = Field(
        default=60.0, gt=0, description="backstop: heads go out after each append batch")
    audit_head_batch_seconds: float = Field(
        default=0.5, gt=0, description="audit appends this close together share one head")
    duplicate_window_seconds: float = Field(default=300.0, gt=0)
    max_deliver: int = Field(default=8, ge=1)
    # The bus: this process's NKey seed, and TLS (a CA to verify the server; a client
    # certificate only where the server asks for one).
    nats_creds_file: Path | None = Field(
        default=None, description="this process's NKey seed file")
    nats_tls_ca_file: Path | None = Field(
        default=None, description="CA that signed the NATS server's certificate")
    nats_tls_cert_file: Path | None = Field(
        default=None, description="client certificate, where the server asks for one")
    nats_tls_key_file: Path | None = Field(
        default=None, description="the client certificate's key")

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
    database_url: str | None = Field(
        default=None, description="the service's own database (`postgresql://…` or "
                                  "`postgres://…`; default: SQLite file in TAILOR_HOME)")
    host: str = Field(default="127.0.0.1", description="interface of `tailor serve`")
    port: int = Field(default=0, description="port of `tailor serve` / `tailor up` (0: free port)")

    def resolved_database_url(self, home: Path) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
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
