"""Composition root of the safety service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.db import is_sqlite
from services.core.digests import load_digest_key
from services.core.runner import Kernel, ServiceSpec, build_app
from services.core.sealing import load_keyring

from . import handlers
from .api import router
from .config import SafetyConfig, utc_now
from .jobs import watch_obligations


def configure(kernel: Kernel) -> None:
    """Deployment settings and the clock (tests replace `extras["now"]` to freeze time)."""
    kernel.extras.setdefault("config", SafetyConfig())
    kernel.extras.setdefault("now", utc_now)
    embedded, home = is_sqlite(kernel.engine), kernel.settings.home
    # Opens the REDCap saves sealed to this service; keys the digests of unblinded data.
    kernel.extras["bus_keyring"] = load_keyring(kernel.name, home, embedded=embedded)
    kernel.extras["digest_key"] = load_digest_key(kernel.name, home, embedded=embedded)
    handlers.bind(kernel)


SPEC = ServiceSpec(
    name="safety",
    title="Tailor safety",
    description="Adverse events, SAE reporting clocks, negative-effects screening, DSMB reports.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    consumers=handlers.CONSUMERS,
    on_startup=[configure],
    background=[watch_obligations],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
