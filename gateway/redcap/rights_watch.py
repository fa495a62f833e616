"""The gateway's start-up (and periodic) blinding check of REDCap user rights.

Offenders (see `rights_check`) are logged by name and make `/readyz` answer 503 until the
project's rights are fixed; so does a check REDCap refuses (Tailor's API user needs the
User Rights privilege to read users and roles): an unchecked project is not a passed one.
REDCap being unreachable does not block readiness: the check is retried at the next
interval and the outage is already visible through the sync.
"""

from __future__ import annotations

import asyncio
from functools import partial

import structlog

from services.core.periodic import every
from services.core.runner import Kernel

from .client import RedcapClient, RedcapRefused, RedcapUnavailable
from .metrics import RIGHTS_OFFENDERS
from .rights_check import Offender
from .settings import RedcapSettings

log = structlog.get_logger(__name__)
READINESS_KEY = "redcap_rights"


class RightsState:
    def __init__(self) -> None:
        self.offenders: list[Offender] = []
        self.refused: str | None = None

    def problem(self) -> str | None:
        """None when ready; else what blocks readiness (names, never data)."""
        if self.refused:
            return f"REDCap user rights could not be checked: {self.refused}"
        if not self.offenders:
            return None
        return "REDCap users/roles could derive the arm: " + "; ".join(
            o.describe() for o in self.offenders)


async def check_once(kernel: Kernel, client: RedcapClient, settings: RedcapSettings,
                     state: RightsState) -> None:
    try:
        offenders = await asyncio.to_thread(
            client.rights_offenders, kernel.protocol.redcap, settings.service_username,
            personalized=kernel.protocol.randomization.personalized,
            module_forms=kernel.protocol.module_forms)
    except RedcapUnavailable as exc:
        log.warning("redcap.rights_check_failed", error=str(exc)[:300])
        return
    except RedcapRefused as exc:
        state.refused = str(exc)[:300]
        RIGHTS_OFFENDERS.set(-1)
        log.error("redcap.rights_check_refused", error=state.refused)
        return
    state.refused = None
    state.offenders = offenders
    RIGHTS_OFFENDERS.set(len(offenders))
    for o in offenders:
        log.error("redcap.rights_offender", kind=o.kind, name=o.name, label=o.label,
                  reason=o.reason)
    if not offenders:
        log.info("redcap.rights_ok")


async def watch_rights(kernel: Kernel, client: RedcapClient, settings: RedcapSettings,
                       state: RightsState) -> None:
    """`check_once` at start-up and every `rights_check_interval_seconds` until stop."""
    await every("redcap.rights_watch", settings.rights_check_interval_seconds,
                partial(check_once, kernel, client, settings, state), stop=kernel.stop)
