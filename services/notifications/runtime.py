"""What the notifications service's use cases need beyond a session: settings, the contact
cipher, the message renderer and an injectable clock.

Consumers get only `(session, envelope)` from the kernel, so the runtime is found through
the session's engine (one runtime per running service, even with two replicas in one
test process). Tests move time by replacing `kernel.extras["now"]`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core.db import is_sqlite
from services.core.protocol import TrialProtocol
from services.core.sealing import Keyring, load_keyring

from .crypto import ContactCipher, load_contact_key
from .domain import MessageRenderer

if TYPE_CHECKING:
    from services.core.runner import Kernel

SMS_SECRET_FILE = "notifications-sms-callback.secret"  # noqa: S105 (a file name)


class NotificationSettings(BaseSettings):
    """`TAILOR_NOTIFICATIONS_*`. Secrets come from the environment or key files, never defaults."""

    model_config = SettingsConfigDict(env_prefix="TAILOR_NOTIFICATIONS_", extra="ignore")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_seconds: float = 30.0
    mail_from: str | None = None  # default: the protocol's study contact address
    smtp_connections: int = 4

    sms_url: str | None = None  # provider base URL; None: SMS sends fail permanently
    sms_api_key: SecretStr | None = None
    sms_callback_url: str | None = None  # our public callback URL, handed to the provider
    sms_callback_secret: SecretStr | None = None
    sms_timeout_seconds: float = 10.0

    contact_key: SecretStr | None = None  # base64 of 32 bytes (AES-256-GCM)

    # Reminders carry the participant's REDCap survey link, asked of the gateway at send
    # time (survey_links.py); without an answer the reminder waits and is retried.
    gateway_url: str | None = Field(
        default=None, description="where the gateway listens (survey links for reminders)",
        validation_alias=AliasChoices("TAILOR_GATEWAY_URL", "TAILOR_NOTIFICATIONS_GATEWAY_URL"))
    gateway_timeout_seconds: float = 10.0

    dispatch_poll_seconds: float = 1.0
    dispatch_batch: int = 200
    dispatch_concurrency: int = 4
    lease_seconds: float = 120.0  # longer than any send may take (see smtp/sms timeouts)
    retry_base_seconds: float = 30.0
    retry_cap_seconds: float = 3600.0
    max_retries: int = 6

    diary_ahead_days: int = 2
    diary_interval_seconds: float = 300.0
    diary_seed: int | None = None
    gauge_interval_seconds: float = 15.0
    simulated_clock_file: Path | None = None  # demos only: see SimulatedClock


@dataclass
class Runtime:
    kernel: Kernel
    settings: NotificationSettings
    cipher: ContactCipher
    renderer: MessageRenderer
    bus_keyring: Keyring  # opens the REDCap saves sealed to this service
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-"
                                                f"{uuid.uuid4().hex[:8]}")
    wake_event: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.AbstractEventLoop | None = None

    @property
    def protocol(self) -> TrialProtocol:
        return self.kernel.protocol

    def now(self) -> datetime:
        clock: Callable[[], datetime] = self.kernel.extras["now"]
        return clock()

    def wake(self) -> None:
        """Ask the dispatcher to look now (safe from worker threads)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.wake_event.set)

    def diary_seed(self) -> int:
        if self.settings.diary_seed is not None:
            return self.settings.diary_seed
        return int.from_bytes(self.protocol.trial.id.encode()[:8].ljust(8, b"\0"), "little")

    def sms_secret(self) -> bytes | None:
        if self.settings.sms_callback_secret is not None:
            return self.settings.sms_callback_secret.get_secret_value().encode()
        path = Path(self.kernel.settings.home) / "keys" / SMS_SECRET_FILE
        return path.read_bytes().strip() if path.exists() else None


_RUNTIMES: WeakKeyDictionary[Engine, Runtime] = WeakKeyDictionary()


def utc_now() -> datetime:
    return datetime.now(UTC)


class SimulatedClock:
    """UTC now plus an offset (seconds) read from a file: lets a demo or a training stack
    move the reminder clock forward by weeks without waiting. Never on a production
    database: start-up refuses it there."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        try:
            offset = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return utc_now() + timedelta(seconds=offset)


def attach(kernel: Kernel) -> None:
    """on_startup hook: build the runtime and make it reachable from sessions."""
    settings = NotificationSettings()
    if settings.simulated_clock_file is not None:
        if kernel.engine.dialect.name != "sqlite":
            raise RuntimeError("TAILOR_NOTIFICATIONS_SIMULATED_CLOCK_FILE is for demos on the "
                               "embedded SQLite stack only")
        kernel.extras["now"] = SimulatedClock(settings.simulated_clock_file)
    kernel.extras.setdefault("now", utc_now)
    key = load_contact_key(settings.contact_key, Path(kernel.settings.home),
                           allow_generate=kernel.engine.dialect.name == "sqlite")
    keyring = load_keyring(kernel.name, Path(kernel.settings.home),
                           embedded=is_sqlite(kernel.engine))
    runtime = Runtime(kernel, settings, ContactCipher(key), MessageRenderer(kernel.protocol),
                      keyring)
    try:
        runtime.loop = asyncio.get_running_loop()
    except RuntimeError:
        runtime.loop = None
    kernel.extras["notifications"] = runtime
    _RUNTIMES[kernel.engine] = runtime


def runtime_of(session: Session) -> Runtime:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return _RUNTIMES[engine]


def runtime_for(kernel: Kernel) -> Runtime:
    runtime: Runtime = kernel.extras["notifications"]
    return runtime
