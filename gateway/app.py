"""Composition root of the gateway."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from .api import router
from .handlers import CONSUMERS
from .redcap import handlers as redcap_handlers
from .redcap import setup as redcap_setup
from .redcap.api import router as redcap_router

SPEC = ServiceSpec(
    name="gateway",
    title="Tailor gateway",
    description="The only public edge of Tailor.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router, redcap_router],
    consumers=lambda kernel: [*CONSUMERS, *redcap_handlers.consumers(kernel.protocol)],
    on_startup=[redcap_setup.start],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
