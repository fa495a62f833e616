"""The gateway: its spec and its edge, assembled by the kernel's `build_app`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.core.runner import ServiceSpec, build_app
from services.core.settings import ServiceSettings, Settings

from . import handlers, openapi, security
from .api import router
from .audit_api import router as audit_router
from .bootstrap import GatewayDeps, bootstrap_for, close_on_stop, run_redcap
from .config import GatewayConfig
from .console import app as console
from .console.settings import ConsoleSettings
from .keys_api import router as keys_router
from .ops_api import router as ops_router
from .proxy import Proxy
from .proxy import router as proxy_router
from .redcap import handlers as redcap_handlers
from .redcap.api import router as redcap_router
from .redcap.survey_links import router as survey_links_router
from .settings import GatewaySettings

SPEC: ServiceSpec[GatewayDeps] = ServiceSpec(
    name="gateway",
    title="Tailor gateway",
    description="The only public edge of Tailor.",
    migrations=Path(__file__).parent / "migrations",
    # The gateway's own routes first; the proxy's catch-all `/api/v1/<service>/…` last.
    routers=[router, audit_router, keys_router, ops_router, redcap_router, survey_links_router,
             proxy_router],
    consumers=lambda deps: [*handlers.consumers(deps),
                            *redcap_handlers.consumers(deps.kernel.protocol, deps.redcap.keys)],
    subscriptions=[handlers.AUDIT_HEADS, redcap_handlers.ALLOCATED,
                   redcap_handlers.STAGE_ALLOCATED],
    reads_dead_letters=True,
    bootstrap=bootstrap_for(None),  # create_app gives it the public edge
    background=[run_redcap, close_on_stop],
    verifies_internal_tokens=False,  # it signs them (its own key is checked at start-up)
)


def create_app(*, config: Settings | None = None, own: ServiceSettings | None = None,
               gateway: GatewaySettings | None = None,
               transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
               console_settings: ConsoleSettings | None = None) -> FastAPI:
    """The public gateway: SPEC plus its edge (guard, limits, headers, CORS), the proxy and
    the public OpenAPI document. `transports` lets a test reach in-process services."""
    sections = GatewayConfig.from_environment(edge=gateway, console=console_settings)
    gateway = sections.edge
    proxy = Proxy(gateway.service_urls, transports=transports,
                  connect_timeout=gateway.proxy_connect_timeout_seconds,
                  timeout=gateway.proxy_timeout_seconds, max_connections=gateway.proxy_max_connections)
    runtime = security.GatewayRuntime.from_settings(gateway, proxy)
    spec = dataclasses.replace(SPEC, bootstrap=bootstrap_for(runtime, sections))
    app = build_app(spec, config=config, own=own)
    app.state.gateway = runtime
    security.install(app, gateway)
    openapi.install(app)
    console.install(app, sections.console)
    return app
