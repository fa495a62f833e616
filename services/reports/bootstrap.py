"""Composition root of the reports service: builds `ReportsDeps` once from the running
kernel (settings, clock, bus key); the consumer, routes and the gauge job receive them.
Tests hand in their own clock (`overrides={"clock": …}`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.core.clock import Clock, clock_for
from services.core.db import is_sqlite
from services.core.protocol import ProtocolError
from services.core.runner import Kernel
from services.core.sealing import Keyring, load_keyring

from .config import ReportsConfig


@dataclass(frozen=True)
class ReportsDeps:
    kernel: Kernel
    config: ReportsConfig
    clock: Clock
    bus_keyring: Keyring  # opens the saves sealed to this service

    def now(self) -> datetime:
        return self.clock()


def bootstrap(kernel: Kernel) -> ReportsDeps:
    if kernel.protocol.reports is None:
        raise ProtocolError(f"{kernel.settings.protocol_file}: reports: required key is missing "
                            "(the feasibility criteria the reports service evaluates)")
    config = ReportsConfig()
    embedded = is_sqlite(kernel.engine)
    clock = clock_for(config.simulated_clock_file, embedded=embedded,
                      setting="TAILOR_REPORTS_SIMULATED_CLOCK_FILE")
    # Its own bus key opens the saves sealed to it; a missing key refuses start-up.
    keyring = load_keyring(kernel.name, kernel.settings.home, embedded=embedded)
    return ReportsDeps(kernel, config, clock, keyring)
