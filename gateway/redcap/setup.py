"""Start-up of the REDCap integration inside the gateway process."""

from __future__ import annotations

import asyncio

import structlog

from gateway.auth.rate_limit import RateLimiter
from services.core.runner import Kernel

from .api import DetLimits
from .client import RedcapClient
from .settings import RedcapSettings
from .workers import start_workers

log = structlog.get_logger(__name__)


def start(kernel: Kernel) -> None:
    settings = RedcapSettings()
    kernel.extras["redcap_settings"] = settings
    kernel.extras["redcap_trigger_wake"] = asyncio.Event()
    kernel.extras["redcap_write_wake"] = asyncio.Event()
    kernel.extras["redcap_det_limits"] = DetLimits(
        accepted=RateLimiter(rate=settings.det_rate_per_second, burst=settings.det_burst),
        refused=RateLimiter(rate=settings.det_refused_per_second, burst=settings.det_refused_burst))
    if not settings.enabled:
        log.warning("redcap.disabled", reason="TAILOR_REDCAP_API_URL or token not set")
        return
    client = RedcapClient(settings.api_url or "", settings.api_token() or "",
                          timeout=settings.timeout_seconds)
    start_workers(kernel, settings, client)
