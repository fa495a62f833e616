"""Who is calling a service: the gateway's signed internal token, checked on every route.

Defense in depth: a service reached directly, without a valid token from the gateway,
answers 401; a caller whose role the permission table does not allow gets 403.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from . import used_tokens
from .errors import DomainError, Forbidden
from .internal_token import (
    ENV_PUBLIC_KEY,
    HEADER,
    PUBLIC_KEY_FILE,
    Caller,
    InternalTokenError,
    InternalTokenVerifier,
    caller_from_header,
    load_public_key,
    public_key_from_env,
)
from .roles import Role, View, is_allowed_for_service, response_view


class Unauthenticated(DomainError):
    status = 401
    title = "Not authenticated"


@lru_cache(maxsize=8)
def verifier_for(service: str, home: str) -> InternalTokenVerifier:
    """The gateway's public key: from the environment, else the embedded stack's key folder."""
    if os.environ.get(ENV_PUBLIC_KEY) or os.environ.get(f"{ENV_PUBLIC_KEY}_FILE"):
        key = public_key_from_env()
    else:
        path = Path(home) / "keys" / PUBLIC_KEY_FILE
        if not path.exists():
            raise Unauthenticated(f"no internal-token public key configured ({ENV_PUBLIC_KEY})")
        key = load_public_key(path.read_bytes(), field=str(path))
    return InternalTokenVerifier(key, audience=service)


def current_caller(request: Request) -> Caller:
    kernel = request.app.state.kernel
    verifier = verifier_for(kernel.name, str(kernel.settings.home.resolve()))
    try:
        caller = caller_from_header(
            request.headers.get(HEADER), verifier, method=request.method, path=request.url.path,
            shared_seen=lambda jti, exp: used_tokens.first_use(kernel.engine, jti, exp))
    except InternalTokenError as exc:
        raise Unauthenticated(str(exc), field=HEADER) from None
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    if not is_allowed_for_service(caller.role, request.method, kernel.name, template):
        raise Forbidden(f"role {caller.role} may not {request.method} {template}")
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


def view_of(caller: Caller) -> View:
    """Blinded or unblinded response shape, decided by role before anything is read."""
    return response_view(Role(caller.role))
