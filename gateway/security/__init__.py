"""The gateway's edge: who is calling (API key or OIDC token), whether the permission
table lets them, how fast, with what body; and the record of who read whose data.

`install(app, settings)` puts the middleware inside the kernel's edge middleware (so
request ids, metrics and problem documents cover refusals too):

    EdgeMiddleware (kernel) → SecurityHeaders → CORS (only if configured) → Guard → BodyLimits → routes
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from gateway.settings import GatewaySettings
from services.core.http import EdgeMiddleware

from .caller import GatewayCallerDep, gateway_caller
from .guard import NOT_PUBLIC, Guard
from .hygiene import BodyLimits, SecurityHeaders
from .runtime import GatewayRuntime, runtime_of

__all__ = ["NOT_PUBLIC", "GatewayCallerDep", "GatewayRuntime", "gateway_caller", "install",
           "runtime_of"]


def _untrusted_request_ids(app: FastAPI) -> None:
    """At the public edge the correlation id is ours; the caller's is a labelled field."""
    app.user_middleware = [
        Middleware(m.cls, *m.args, **{**m.kwargs, "trust_request_id": False})  # type: ignore[arg-type]
        if m.cls is EdgeMiddleware else m for m in app.user_middleware]


def install(app: FastAPI, settings: GatewaySettings) -> None:
    _untrusted_request_ids(app)
    # Appended after the kernel's EdgeMiddleware: user_middleware[0] is the outermost layer.
    layers = [Middleware(SecurityHeaders)]
    if settings.cors_origins:
        layers.append(Middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "X-Next-Cursor"],
            allow_credentials=False, max_age=600))
    layers += [Middleware(Guard),
               Middleware(BodyLimits, max_body=settings.max_body_bytes,
                          max_upload=settings.max_upload_bytes,
                          max_unauthenticated=settings.max_unauthenticated_body_bytes)]
    app.user_middleware.extend(layers)
