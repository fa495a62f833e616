"""Start-up of the REDCap integration inside the gateway process."""

from __future__ import annotations

import asyncio

import structlog

from services.core.runner import Kernel

from .client import RedcapClient
from .settings import RedcapSettings
from .workers import start_workers

log = structlog.get_logger(__name__)


def start(kernel: Kernel) -> None:
    settings = RedcapSettings()
    kernel.extras["redcap_settings"] = settings
    kernel.extras["redcap_trigger_wake"] = asyncio.Event()
    kernel.extras["redcap_write_wake"] = asyncio.Event()
    if settings.required:  # production: DETs would be refused, so say so on /readyz
        kernel.extras.setdefault("readiness", {})["redcap"] = settings.missing
    if not settings.enabled:
        log.warning("redcap.disabled", reason="TAILOR_REDCAP_API_URL or token not set")
        return
    client = RedcapClient(settings.api_url or "", settings.api_token() or "",
                          timeout=settings.timeout_seconds)
    start_workers(kernel, settings, client)
