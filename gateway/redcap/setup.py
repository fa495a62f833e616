"""The REDCap integration inside the gateway process: `build` makes its dependencies once
(part of the gateway's composition root), `run` is its background job."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from gateway.auth.rate_limit import RateLimiter
from services.core.db import is_sqlite
from services.core.digests import load_digest_key
from services.core.events.form_fields import form_save_consumers
from services.core.runner import Kernel
from services.core.sealing import load_keyring, load_recipient
from services.core.survey_links import survey_link_secret_once

from .client import RedcapClient
from .deps import DetLimits, RedcapDeps
from .rights_watch import READINESS_KEY, watch_rights
from .service import FormKeys
from .settings import RedcapSettings
from .workers import run_workers

log = structlog.get_logger(__name__)


def build(kernel: Kernel, settings: RedcapSettings) -> RedcapDeps:
    survey_secret = survey_link_secret_once(Path(kernel.settings.home),
                                            embedded=is_sqlite(kernel.engine))
    limits = DetLimits(
        accepted=RateLimiter(rate=settings.det_rate_per_second, burst=settings.det_burst),
        refused=RateLimiter(rate=settings.det_refused_per_second, burst=settings.det_refused_burst))
    if settings.required:  # production: DETs would be refused, so say so on /readyz
        kernel.readiness["redcap"] = settings.missing
    if not settings.enabled:
        log.warning("redcap.disabled", reason="TAILOR_REDCAP_API_URL or token not set")
        return RedcapDeps(settings, limits, survey_link_secret=survey_secret)
    deps = RedcapDeps(settings, limits, keys=form_keys(kernel),
                      client=RedcapClient(settings.api_url or "", settings.api_token() or "",
                                          timeout=settings.timeout_seconds),
                      survey_link_secret=survey_secret)
    kernel.readiness[READINESS_KEY] = deps.rights.problem
    return deps


async def run(kernel: Kernel, redcap: RedcapDeps) -> None:
    """The drains, the sweep and the user-rights watch, until the process stops."""
    if redcap.client is None or redcap.keys is None:
        return
    await asyncio.gather(
        run_workers(kernel, redcap.settings, redcap.client, redcap.keys,
                    trigger_wake=redcap.trigger_wake, write_wake=redcap.write_wake),
        watch_rights(kernel, redcap.client, redcap.settings, redcap.rights))


def form_keys(kernel: Kernel) -> FormKeys:
    """Every consumer's bus public key and the digest key; a missing one refuses start-up,
    naming its setting (only the embedded SQLite default generates them)."""
    embedded, home = is_sqlite(kernel.engine), kernel.settings.home
    recipients = {consumer: load_recipient(consumer, home, embedded=embedded)
                  for consumer in form_save_consumers(kernel.protocol)}
    # SMART: the gateway opens each stage's option (sealed to it) to write it back.
    stage_options = (load_keyring("gateway", home, embedded=embedded)
                     if kernel.protocol.randomization.stages else None)
    keys = FormKeys(recipients, load_digest_key("gateway", home, embedded=embedded),
                    stage_options)
    log.info("redcap.form_keys_loaded", digest_key_id=keys.digest.key_id,
             **{f"{c}_bus_key_id": r.key_id for c, r in recipients.items()})
    return keys
