"""The allocation service: its spec, assembled by the kernel's `build_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from . import handlers
from .api import router
from .bootstrap import AllocationDeps, bootstrap

SPEC: ServiceSpec[AllocationDeps] = ServiceSpec(
    name="allocation",
    title="Tailor allocation",
    description="MPI-D scoring and cluster prediction (cluster is unblinding data).",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    bootstrap=bootstrap,
    consumers=handlers.consumers,
    subscriptions=[handlers.FORM_SAVED],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
