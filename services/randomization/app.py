"""Composition root of the randomization service."""

from __future__ import annotations

from pathlib import Path

import structlog
from fastapi import FastAPI

from services.core.db import is_sqlite
from services.core.runner import Kernel, ServiceSpec, build_app
from services.core.sealing import Keyring, load_keyring

from . import handlers
from .api import router
from .keys import load_list_key
from .service import EXTRA, SERVICE, Context

log = structlog.get_logger(__name__)


def build_spec() -> ServiceSpec:
    """A spec whose consumers and routes share one Context, made when the kernel starts."""
    made: dict[str, Context] = {}
    bus_key: dict[str, Keyring] = {}

    def load_context(kernel: Kernel) -> None:
        # A key is generated under TAILOR_HOME only for the embedded SQLite default.
        key = load_list_key(kernel.settings.home, allow_generate=is_sqlite(kernel.engine))
        made["context"] = kernel.extras[EXTRA] = Context(key=key, protocol=kernel.protocol)
        log.info("randomization.list_key_loaded", key_id=key.key_id, source=key.source)
        # Opens the clusters sealed to this service; the only private key that can.
        bus_key["keyring"] = load_keyring(SERVICE, kernel.settings.home,
                                          embedded=is_sqlite(kernel.engine))
        log.info("randomization.bus_key_loaded", key_id=bus_key["keyring"].key_id)

    return ServiceSpec(
        name=SERVICE,
        title="Tailor randomization",
        description="Sealed stratified randomization lists, concealed allocation, blinding, "
                    "emergency unblinding, verifiable list commitments.",
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        consumers=handlers.consumers(lambda: made["context"], lambda: bus_key["keyring"]),
        on_startup=[load_context],
        background=[handlers.watch_free_slots],
    )


SPEC = build_spec()


def create_app() -> FastAPI:
    return build_app(SPEC)
