"""The safety service: its spec, assembled by the kernel's `build_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from . import handlers
from .api import router
from .bootstrap import SafetyDeps, bootstrap
from .jobs import watch_obligations

SPEC: ServiceSpec[SafetyDeps] = ServiceSpec(
    name="safety",
    title="Tailor safety",
    description="Adverse events, SAE reporting clocks, negative-effects screening, DSMB reports.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    bootstrap=bootstrap,
    consumers=handlers.consumers,
    subscriptions=handlers.SUBSCRIPTIONS,
    background=[watch_obligations],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
