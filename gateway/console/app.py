"""Wires the console into the gateway app: its state, its routes and its error pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from . import (
    signin,
    today,
    views_audit,
    views_keys,
    views_participants,
    views_randomization,
    views_recruitment,
    views_safety,
)
from .settings import ConsoleSettings
from .web import PATH, ConsoleRuntime, PageRefused, install_handlers

STATIC = Path(__file__).parent / "static"
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
ASSETS = {p.name: (p.read_bytes(), _TYPES[p.suffix]) for p in STATIC.iterdir() if p.suffix in _TYPES}

static_router = APIRouter(prefix=f"{PATH}/static", include_in_schema=False)


@static_router.get("/{name}")
async def asset(name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        raise PageRefused(404, "Not found", f"no asset {name}")
    return Response(found[0], media_type=found[1])


ROUTERS = (signin.router, today.router, views_recruitment.router, views_participants.router,
           views_audit.router, views_randomization.router, views_safety.router,
           views_keys.router, static_router)


def install(app: FastAPI, settings: ConsoleSettings) -> None:
    app.state.console = ConsoleRuntime.from_settings(settings)
    for router in ROUTERS:
        app.include_router(router)
    install_handlers(app)
