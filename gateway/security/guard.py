"""The guard: every request is checked against the permission table before routing.

Deny by default: a path the table does not name answers 404 whatever the app serves (a
route added without a rule is unreachable); the web console's pages under `/console/`
pass to the console, which checks its own session and each page's roles. Routes whose
credential is `none` (probes, the OpenAPI document, the SMS provider's signed callback) or
`redcap_secret` (the DET, which checks its URL secret itself) pass without a bearer token;
every other route needs an API key or an OIDC token (401), within the caller's rate (429 +
Retry-After), of a role the rule lists (403). The caller is left in `scope["state"]` for the routes.

Access to participant data is recorded in the gateway's audit chain *before* the
response leaves: if it cannot be recorded, the caller gets 503 instead of the data.
"""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any
from urllib.parse import parse_qs

import structlog
from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import errors
from gateway.console.rules import console_rule
from services.core import audit
from services.core.db import unit_of_work
from services.core.http import CALLER_REQUEST_ID, problem
from services.core.internal_token import Caller
from services.core.roles import Credential, RoutePermission, find_rule

from .authenticate import authenticate, bearer_token, key_id_of
from .caller import CALLER
from .client import CLIENT, client_address
from .reads import PARTICIPANT_QUERY, Access, path_params, record_access
from .runtime import GatewayRuntime, runtime_from_scope

log = structlog.get_logger(__name__)

AUTH_REFUSED = Counter("tailor_gateway_auth_refused_total",
                       "Requests refused at the gateway, by reason class", ["reason"])
RULE = "rule"
CHECKED_PATH = "checked_path"  # the path the guard checked: the proxy forwards exactly it
# Routes the kernel gives every process for callers inside the cluster. The gateway
# serves them too, but they have no rule, so the guard refuses them from outside.
NOT_PUBLIC = frozenset({("GET", "/v1/audit"), ("GET", "/v1/audit/verify"),
                        ("GET", "/v1/audit/witnessed")})
# A refused but well-formed key of ours is worth an audit entry (someone holds it).
_AUDITED_REFUSALS = (errors.WrongSecretError, errors.ExpiredCredentialError,
                     errors.RevokedCredentialError)


def is_clean(path: str) -> bool:
    """No dot segments and no empty segments: what is checked is what is forwarded."""
    segments = path.split("/")[1:]
    return path.startswith("/") and all(s not in ("", ".", "..") for s in segments[:-1]) \
        and segments[-1] not in (".", "..")


def _unsafe(text: str) -> bool:
    # Whitespace, control, format (zero-width, bidi), private or unassigned characters: an id
    # holding one could be shown, stored or matched as another id (`10\t05` vs `1005`).
    return any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in text)


def unsafe_field(rule: RoutePermission, path: str, query_string: bytes) -> str | None:
    """The path parameter (or participant query parameter) that holds whitespace or a
    control character, or None. Such a request is refused before anything acts on it, so
    the guard, the audit record and the proxy all see the one path that was checked."""
    for name, value in path_params(rule.template, path).items():
        if _unsafe(value):
            return name
    if _unsafe(path):
        return "path"
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    for name in PARTICIPANT_QUERY:
        if any(_unsafe(v) for v in query.get(name, ())):
            return name
    return None


def _request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


def _caller_request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get(CALLER_REQUEST_ID)


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, title: str,
                  detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
    response = problem(status, title, detail, **extra)
    response.headers.update(headers or {})
    await response(scope, receive, send)


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule = (find_rule(method, path) or console_rule(method, path)) if is_clean(path) else None
        if rule is None:
            await _answer(scope, receive, send, 404, "Not found", f"no public route {method} {path}")
            return
        unsafe = unsafe_field(rule, path, scope.get("query_string", b""))
        if unsafe is not None:
            await _answer(scope, receive, send, 400, "Invalid identifier",
                          f"{unsafe}: whitespace and control characters are not allowed",
                          field=unsafe)
            return
        scope.setdefault("state", {})[RULE] = rule
        scope["state"][CHECKED_PATH] = path
        runtime = runtime_from_scope(scope)
        if runtime is not None:
            scope["state"][CLIENT] = client_address(scope, runtime.trusted_proxies)
        if rule.credential is not Credential.BEARER:
            await self.app(scope, receive, send)
            return
        if runtime is None or runtime.kernel is None:
            await _answer(scope, receive, send, 503, "Gateway not ready", "the gateway is starting")
            return
        caller = await self._admit(runtime, rule, scope, receive, send)
        if caller is None:
            return
        scope["state"][CALLER] = caller
        access = Access.of(rule, caller, method=method, path=path,
                           query_string=scope.get("query_string", b""), request_id=_request_id(),
                           caller_request_id=_caller_request_id())
        if access is None:
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, _recording(runtime, access, scope, receive, send))

    async def _admit(self, runtime: GatewayRuntime, rule: RoutePermission, scope: Scope,
                     receive: Receive, send: Send) -> Caller | None:
        """The authenticated, allowed caller; or None once a refusal has been sent."""
        header = Headers(scope=scope).get("authorization")
        try:
            caller = await asyncio.to_thread(authenticate, runtime.engine, runtime.oidc, header)
        except errors.KeySourceUnavailableError:
            AUTH_REFUSED.labels("identity_provider_unavailable").inc()
            await _answer(scope, receive, send, 503, "Identity provider unavailable",
                          "tokens cannot be checked right now; retry shortly",
                          headers={"Retry-After": "5"})
            return None
        except errors.AuthenticationError as exc:
            await self._refuse_credential(runtime, exc, header, scope, receive, send)
            return None
        decision = runtime.limiter.check(f"caller:{caller.subject}")
        if not decision.allowed:
            AUTH_REFUSED.labels("rate_limited").inc()
            await _answer(scope, receive, send, 429, "Too many requests",
                          "this key's request rate is exceeded; retry after the given seconds",
                          headers={"Retry-After": decision.retry_after_header})
            return None
        if caller.role not in rule.roles:
            AUTH_REFUSED.labels("forbidden").inc()
            log.warning("gateway.forbidden", subject=caller.subject, role=caller.role.value,
                        route=rule.template, method=scope["method"])
            await _answer(scope, receive, send, 403, "Forbidden",
                          f"role {caller.role.value} may not {scope['method']} {rule.template}")
            return None
        return caller

    async def _refuse_credential(self, runtime: GatewayRuntime, exc: errors.AuthenticationError,
                                 header: str | None, scope: Scope, receive: Receive,
                                 send: Send) -> None:
        AUTH_REFUSED.labels("unauthenticated").inc()
        client = scope["state"].get(CLIENT) or "unknown"
        key_id = None
        try:
            key_id = key_id_of(bearer_token(header))
        except errors.AuthenticationError:
            pass
        # Failures are limited per client address (X-Forwarded-For only from a trusted
        # proxy) and per key id (so rotating addresses does not help against one key).
        for bucket in (f"refused:{client}", *([f"refused-key:{key_id}"] if key_id else [])):
            decision = runtime.limiter.check(bucket)
            if not decision.allowed:
                await _answer(scope, receive, send, 429, "Too many requests",
                              "too many refused credentials from this address or for this key",
                              headers={"Retry-After": decision.retry_after_header})
                return
        log.warning("gateway.unauthenticated", reason=exc.reason, key_id=key_id,
                    kind=type(exc).__name__)
        if key_id and isinstance(exc, _AUDITED_REFUSALS):
            left_out = runtime.refusals.admit(key_id)  # None: counted, summarised later
            if left_out is not None:
                await asyncio.to_thread(_audit_refusal, runtime, key_id, exc.reason, left_out)
        await _answer(scope, receive, send, 401, "Not authenticated",
                      "send a valid API key or OIDC token as `Authorization: Bearer …`",
                      headers={"WWW-Authenticate": 'Bearer realm="tailor"'}, field="Authorization")


def _audit_refusal(runtime: GatewayRuntime, key_id: str, reason: str, left_out: int) -> None:
    after: dict[str, object] = {"reason": reason}
    if left_out:
        after["refusals_not_recorded_since_last"] = left_out
    if _caller_request_id():
        after["caller_request_id"] = _caller_request_id()
    with unit_of_work(runtime.engine) as session:
        audit.append(session, actor=f"apikey:{key_id}", role="unknown", action="auth.refused",
                     entity_type="api_key", entity_id=key_id, after=after,
                     correlation_id=_request_id())


def _recording(runtime: GatewayRuntime, access: Access, scope: Scope, receive: Receive,
               send: Send) -> Send:
    """A `send` that records the access when the response starts; if the record cannot be
    written, the response is replaced by a 503 and nothing of it reaches the caller."""
    refused = False

    async def send_recorded(message: Message) -> None:
        nonlocal refused
        if refused:
            return
        if message["type"] == "http.response.start":
            try:
                await asyncio.to_thread(record_access, runtime.engine, access,
                                        status=message["status"])
            except Exception as exc:
                refused = True
                log.error("gateway.access_not_recorded", error=type(exc).__name__,
                          route=access.rule.template)
                await _answer(scope, receive, send, 503, "Access not recorded",
                              "the read could not be recorded in the audit trail, so nothing "
                              "is returned; retry shortly", headers={"Retry-After": "5"})
                return
        await send(message)

    return send_recorded
