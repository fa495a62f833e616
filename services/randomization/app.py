"""The randomization service: its spec, assembled by the kernel's `build_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app

from . import handlers
from .api import router
from .bootstrap import RandomizationDeps, bootstrap
from .service import SERVICE


def build_spec() -> ServiceSpec[RandomizationDeps]:
    return ServiceSpec(
        name=SERVICE,
        title="Tailor randomization",
        description="Sealed stratified randomization lists, concealed allocation, blinding, "
                    "emergency unblinding, verifiable list commitments.",
        migrations=Path(__file__).parent / "migrations",
        routers=[router],
        bootstrap=bootstrap,
        consumers=handlers.consumers,
        subscriptions=handlers.SUBSCRIPTIONS,
        background=[handlers.watch_free_slots],
    )


SPEC = build_spec()


def create_app() -> FastAPI:
    return build_app(SPEC)
