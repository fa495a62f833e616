"""Composition root of the randomization service: builds its typed dependencies once from
the running kernel; routes, the consumer and the slot watch receive them."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from services.core.db import is_sqlite
from services.core.runner import Kernel
from services.core.sealing import Keyring, load_keyring, load_recipient

from .keys import load_list_key
from .service import SERVICE, Context

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RandomizationDeps:
    kernel: Kernel
    context: Context  # the list key, the protocol, cached designs
    bus_keyring: Keyring  # opens the clusters sealed to this service; the only key that can


def bootstrap(kernel: Kernel) -> RandomizationDeps:
    embedded = is_sqlite(kernel.engine)
    # A key is generated under TAILOR_HOME only for the embedded SQLite default.
    key = load_list_key(kernel.settings.home, allow_generate=embedded)
    log.info("randomization.list_key_loaded", key_id=key.key_id, source=key.source)
    keyring = load_keyring(SERVICE, kernel.settings.home, embedded=embedded)
    log.info("randomization.bus_key_loaded", key_id=keyring.key_id)
    # A multi-stage design seals each stage's option to the gateway, which writes it back.
    gateway = (load_recipient("gateway", kernel.settings.home, embedded=embedded)
               if kernel.protocol.randomization.stages else None)
    return RandomizationDeps(kernel, Context(key=key, protocol=kernel.protocol,
                                             seal_to_gateway=gateway), keyring)
