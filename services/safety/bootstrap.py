"""Composition root of the safety service: builds `SafetyDeps` once from the running kernel
(its settings, the clock, the bus key and the digest key); routes, consumers and the
obligation watch receive them. Tests hand in a frozen clock (`overrides={"clock": …}`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.core.clock import Clock, utc_now
from services.core.db import is_sqlite
from services.core.digests import DigestKey, load_digest_key
from services.core.runner import Kernel
from services.core.sealing import Keyring, load_keyring

from .config import SafetyConfig


@dataclass(frozen=True)
class SafetyDeps:
    kernel: Kernel
    config: SafetyConfig
    clock: Clock
    bus_keyring: Keyring  # opens the REDCap saves sealed to this service
    digest_key: DigestKey  # keys the digests of unblinded data

    def now(self) -> datetime:
        return self.clock()


def bootstrap(kernel: Kernel) -> SafetyDeps:
    embedded, home = is_sqlite(kernel.engine), kernel.settings.home
    return SafetyDeps(kernel=kernel, config=SafetyConfig(), clock=utc_now,
                      bus_keyring=load_keyring(kernel.name, home, embedded=embedded),
                      digest_key=load_digest_key(kernel.name, home, embedded=embedded))
