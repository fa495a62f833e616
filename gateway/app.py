"""Composition root of the gateway."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from .api import router
from .handlers import CONSUMERS

SPEC = ServiceSpec(
    name="gateway",
    title="Tailor gateway",
    description="The only public edge of Tailor.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    consumers=CONSUMERS,
)


def create_app() -> FastAPI:
    return build_app(SPEC)
