"""Which console paths exist, for the gateway's guard.

The guard answers 404 to every path the permission table does not name. Console pages
are not API routes: the guard lets them through to the console, which checks its own
session and, per page, the roles the permission table gives the API routes the page
reads (see `pages`). Kept free of imports from the rest of the console so the guard can
use it without a cycle."""

from __future__ import annotations

from functools import cache

from services.core.roles import BEARER_ROLES, Credential, RoutePermission

PREFIX = "/console"


@cache
def _rule(method: str) -> RoutePermission:
    return RoutePermission(method, f"{PREFIX}/{{path:path}}", BEARER_ROLES,
                           credential=Credential.SESSION, note="web console page")


def console_rule(method: str, path: str) -> RoutePermission | None:
    """The console's rule for a request, or None when the path is not the console's."""
    if method not in ("GET", "HEAD", "POST"):
        return None
    if path == PREFIX or path.startswith(f"{PREFIX}/"):
        return _rule("GET" if method == "HEAD" else method)
    return None
