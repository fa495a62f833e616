"""The gateway's view of the permission table.

The table itself lives in `services.core.roles` (services enforce it too, and
services may not import the gateway); this module adds what only the gateway
needs: checking a FastAPI app's routes against the table, and the roles of a
route for the OpenAPI description.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import routing as fastapi_routing

from services.core.roles import (
    PERMISSIONS,
    Credential,
    Role,
    RoutePermission,
    View,
    find_rule,
    is_allowed,
    response_view,
)

__all__ = [
    "PERMISSIONS",
    "Credential",
    "RoutePermission",
    "View",
    "allowed_roles",
    "find_rule",
    "is_allowed",
    "missing_routes",
    "response_view",
]

# Added by Starlette to every GET route and answered from the GET rule (or by CORS).
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})


def allowed_roles(method: str, route: str) -> frozenset[Role]:
    rule = find_rule(method, route)
    if rule is None:
        return frozenset()
    return frozenset(Role) if rule.credential is Credential.NONE else rule.roles


def _flattened(routes: Sequence[Any]) -> Sequence[Any]:
    # FastAPI >= 0.16x keeps included routers as lazy branches; expand them the way
    # FastAPI itself does when it builds the OpenAPI document.
    expand = getattr(fastapi_routing, "iter_route_contexts", None)
    return list(expand(list(routes))) if expand else list(routes)


def _endpoints(routes: Sequence[Any], prefix: str = "") -> Iterable[tuple[str, str]]:
    for route in _flattened(routes):
        path = prefix + str(getattr(route, "path", ""))
        methods = getattr(route, "methods", None)
        children = getattr(route, "routes", None)
        if methods:
            for method in sorted(set(methods) - _IMPLICIT_METHODS):
                yield method, path
        elif children is not None:  # a Mount: its routes sit under its path
            yield from _endpoints(children, path)
        else:  # a websocket or anything else: it needs a rule like any other
            yield "WEBSOCKET", path


def missing_routes(
    app_or_routes: Any, rules: Iterable[RoutePermission] = PERMISSIONS
) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves that the table does not cover.

    Takes a FastAPI/Starlette app or its `routes`. An empty answer is what the
    permission-matrix test demands: a new route without an entry fails it.
    """
    routes: Sequence[Any] = getattr(app_or_routes, "routes", app_or_routes)
    rules = tuple(rules)
    return [(method, path) for method, path in _endpoints(routes) if find_rule(method, path, rules) is None]
