"""The reports service: its spec, assembled by the kernel's `build_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from . import handlers
from .api import router
from .bootstrap import ReportsDeps, bootstrap
from .metrics import keep_gauges_fresh

SPEC: ServiceSpec[ReportsDeps] = ServiceSpec(
    name="reports",
    title="Tailor reports",
    description="CONSORT flow, feasibility verdicts, recruitment, retention: a read model of the bus.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    bootstrap=bootstrap,
    consumers=handlers.consumers,
    subscriptions=handlers.SUBSCRIPTIONS,
    background=[keep_gauges_fresh],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
