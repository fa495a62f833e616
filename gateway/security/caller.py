"""The caller of a gateway route, as the guard established it.

The guard authenticates before routing; this dependency only reads its result and checks
the route's own template against the table once more, so a route stays closed even in an
app built without the guard (fail closed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.auth.errors import AUTHORIZATION
from services.core.auth import Unauthenticated
from services.core.errors import Forbidden
from services.core.internal_token import Caller
from services.core.roles import Credential, is_allowed

CALLER = "caller"


def gateway_caller(request: Request) -> Caller:
    caller = request.scope.get("state", {}).get(CALLER)
    if not isinstance(caller, Caller):
        raise Unauthenticated("send an API key or an OIDC token as a bearer token", field=AUTHORIZATION)
    template = getattr(request.scope.get("route"), "path", request.url.path)
    if not is_allowed(caller.role, request.method, template, credential=Credential.BEARER):
        raise Forbidden(f"role {caller.role} may not {request.method} {template}")
    return caller


GatewayCallerDep = Annotated[Caller, Depends(gateway_caller)]
