"""What the notifications service's use cases need beyond a session: its settings, the
contact cipher, the message renderer, the clock and the dispatcher's wake signal. One
`Runtime` per running service, built by `bootstrap.py`; tests hand in a clock they move."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.clock import Clock
from services.core.periodic import Wake
from services.core.protocol import TrialProtocol
from services.core.sealing import Keyring

from .crypto import ContactCipher
from .domain import ContentGuard, MessageRenderer

if TYPE_CHECKING:
    from services.core.runner import Kernel

    from .dispatch.compose import SafetyNotices

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
    simulated_clock_file: Path | None = None  # demos only: see services/core/clock.py


@dataclass(frozen=True)
class Runtime:
    """The notifications service's typed dependencies, built once by `bootstrap.py` and
    handed to routes, consumers and jobs."""

    kernel: Kernel
    settings: NotificationSettings
    clock: Clock
    cipher: ContactCipher
    renderer: MessageRenderer
    bus_keyring: Keyring  # opens the REDCap saves sealed to this service
    safety_notices: SafetyNotices
    alert_guard: ContentGuard  # checks the staff alerts for blinded words
    wake_signal: Wake = field(default_factory=Wake)  # the dispatcher looks now when set
    # The secret shown to the gateway for survey links, read at first use (bootstrap.py).
    survey_link_secret: Callable[[], bytes] = lambda: b""
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-"
                                                f"{uuid.uuid4().hex[:8]}")

    @property
    def protocol(self) -> TrialProtocol:
        return self.kernel.protocol

    def now(self) -> datetime:
        return self.clock()

    def wake(self) -> None:
        """Ask the dispatcher to look now (safe from worker threads)."""
        self.wake_signal.set()

    def diary_seed(self) -> int:
        if self.settings.diary_seed is not None:
            return self.settings.diary_seed
        return int.from_bytes(self.protocol.trial.id.encode()[:8].ljust(8, b"\0"), "little")

    def sms_secret(self) -> bytes | None:
        if self.settings.sms_callback_secret is not None:
            return self.settings.sms_callback_secret.get_secret_value().encode()
        path = Path(self.kernel.settings.home) / "keys" / SMS_SECRET_FILE
        return path.read_bytes().strip() if path.exists() else None
