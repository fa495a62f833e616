"""The notifications service: its spec, assembled by the kernel's `build_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from . import handlers
from .api import router
from .bootstrap import bootstrap
from .dispatch.loop import dispatcher, housekeeping
from .runtime import Runtime

SPEC: ServiceSpec[Runtime] = ServiceSpec(
    name="notifications",
    title="Tailor notifications",
    description="Assessment schedules, reminders to non-responders, diary prompts, "
                "safety notices; durable, idempotent dispatch.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    bootstrap=bootstrap,
    consumers=handlers.consumers,
    subscriptions=handlers.SUBSCRIPTIONS,
    background=[dispatcher, housekeeping],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
