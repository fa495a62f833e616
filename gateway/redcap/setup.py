"""Start-up of the REDCap integration inside the gateway process."""

from __future__ import annotations

import asyncio

import structlog

from gateway.auth.rate_limit import RateLimiter
from services.core.db import is_sqlite
from services.core.digests import load_digest_key
from services.core.events import FORM_SAVED_FOR
from services.core.runner import Kernel
from services.core.sealing import load_recipient

from .api import DetLimits
from .client import RedcapClient
from .rights_watch import start_rights_watch
from .service import FormKeys
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
    if settings.required:  # production: DETs would be refused, so say so on /readyz
        kernel.extras.setdefault("readiness", {})["redcap"] = settings.missing
    if not settings.enabled:
        log.warning("redcap.disabled", reason="TAILOR_REDCAP_API_URL or token not set")
        return
    keys = form_keys(kernel)
    client = RedcapClient(settings.api_url or "", settings.api_token() or "",
                          timeout=settings.timeout_seconds)
    kernel.extras["redcap_client"] = client  # survey_links.py: reminders' survey links
    start_workers(kernel, settings, client, keys)
    start_rights_watch(kernel, client, settings)


def form_keys(kernel: Kernel) -> FormKeys:
    """Every consumer's bus public key and the digest key; a missing one refuses start-up,
    naming its setting (only the embedded SQLite default generates them)."""
    embedded, home = is_sqlite(kernel.engine), kernel.settings.home
    recipients = {consumer: load_recipient(consumer, home, embedded=embedded)
                  for consumer in FORM_SAVED_FOR}
    keys = FormKeys(recipients, load_digest_key("gateway", home, embedded=embedded))
    log.info("redcap.form_keys_loaded", digest_key_id=keys.digest.key_id,
             **{f"{c}_bus_key_id": r.key_id for c, r in recipients.items()})
    return keys
