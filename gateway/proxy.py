"""`/api/v1/<service>/…` → the owning service, with the caller's identity in a freshly
signed internal token addressed to that service.

One pooled `httpx.AsyncClient` per service, with connect and read timeouts and an overall
deadline: a service that is down, refuses, or does not answer in time is a 503 problem
document naming it, never a hang. Only paths with a rule in the permission table get here
(the guard answers 404 to the rest), so a service's `/metrics`, `/healthz` and
`/openapi.json` stay inside the cluster.

Addresses come from `TAILOR_<SERVICE>_URL`; tests may give a transport per service instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.core.auth import Unauthenticated
from services.core.errors import Forbidden, NotFound
from services.core.http import problem
from services.core.internal_token import HEADER, Caller
from services.core.roles import SERVICES, Credential, find_rule

from .security.caller import CALLER
from .security.guard import is_clean
from .security.runtime import runtime_of

log = structlog.get_logger(__name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Never passed on: connection-level headers, the caller's credentials (the service gets a
# signed token instead) and anything that claims to be a token from the gateway.
_DROP_REQUEST = frozenset({
    "host", "connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "authorization", "cookie", "content-length",
    HEADER.lower(), "x-request-id", "forwarded", "x-forwarded-for", "x-forwarded-host",
    "x-forwarded-proto"})
_DROP_RESPONSE = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length", "content-encoding", "x-request-id", "server", "date",
    "set-cookie"})
# Routes whose service asks another service with the caller's own token (the DSMB report:
# safety fetches the arms from randomization), so the token is addressed to both.
ONWARD_AUDIENCES: dict[str, tuple[str, ...]] = {
    "/api/v1/safety/v1/reports/unblinded": ("randomization",),
    "/api/v1/safety/v1/reports/dsmb": ("randomization",),
    # per-arm figures for unblinded callers: reports asks randomization for the arms
    "/api/v1/reports/v1/flow": ("randomization",),
    "/api/v1/reports/v1/acceptability": ("randomization",),
}


class ServiceUnavailable(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service}: {reason}")
        self.service = service
        self.reason = reason


def unavailable(exc: ServiceUnavailable) -> JSONResponse:
    response = problem(503, "Service unavailable",
                       f"the {exc.service} service {exc.reason}; retry shortly",
                       service=exc.service)
    response.headers["Retry-After"] = "5"
    return response


class Proxy:
    """Pooled clients to the services; created on first use, closed at shutdown."""

    def __init__(self, urls: Mapping[str, str], *,
                 transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
                 connect_timeout: float = 2.0, timeout: float = 30.0,
                 max_connections: int = 100) -> None:
        self._urls = dict(urls)
        self._transports = dict(transports or {})
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._deadline = connect_timeout + timeout
        self._limits = httpx.Limits(max_connections=max_connections,
                                    max_keepalive_connections=max_connections // 2)
        self._clients: dict[str, httpx.AsyncClient] = {}

    @property
    def services(self) -> frozenset[str]:
        return frozenset(self._urls) | frozenset(self._transports)

    def _client(self, service: str) -> httpx.AsyncClient:
        client = self._clients.get(service)
        if client is None:
            client = httpx.AsyncClient(
                base_url=self._urls.get(service, f"http://{service}"),
                transport=self._transports.get(service), timeout=self._timeout,
                limits=self._limits, follow_redirects=False, trust_env=False)
            self._clients[service] = client
        return client

    async def send(self, service: str, method: str, path: str, *, query: str = "",
                   headers: Mapping[str, str] | None = None, content: bytes = b"",
                   params: Mapping[str, Any] | None = None) -> httpx.Response:
        """The service's whole answer, or ServiceUnavailable (never waits past the deadline)."""
        if service not in self.services:
            raise ServiceUnavailable(service, "has no configured address")
        url = f"{path}?{query}" if query else path
        try:
            async with asyncio.timeout(self._deadline):
                return await self._client(service).request(
                    method, url, headers=dict(headers or {}), content=content or None,
                    params=params)
        except (TimeoutError, httpx.TimeoutException):
            raise ServiceUnavailable(service, "did not answer in time") from None
        except httpx.TransportError as exc:
            log.warning("gateway.service_unreachable", target=service, error=type(exc).__name__)
            raise ServiceUnavailable(service, "cannot be reached") from None

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def audience_for(service: str, template: str) -> str | list[str]:
    onward = ONWARD_AUDIENCES.get(template, ())
    return [service, *onward] if onward else service


def _caller(request: Request) -> Caller | None:
    caller = request.scope.get("state", {}).get(CALLER)
    return caller if isinstance(caller, Caller) else None


def _request_id(request: Request) -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


def _forwarded_response(upstream: httpx.Response) -> Response:
    response = Response(content=upstream.content, status_code=upstream.status_code)
    response.raw_headers.extend(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream.headers.multi_items() if name.lower() not in _DROP_RESPONSE)
    return response


def _forwarder(service: str):  # type: ignore[no-untyped-def]
    prefix = f"/api/v1/{service}"

    async def forward(request: Request, path: str) -> Response:
        runtime = runtime_of(request)
        public = request.url.path
        rule = find_rule(request.method, public) if is_clean(public) else None
        if rule is None:
            raise NotFound(f"no public route {request.method} {public}")
        caller = _caller(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
        request_id = _request_id(request)
        if request_id:
            headers["x-request-id"] = request_id
        if rule.credential is Credential.BEARER:  # fail closed even without the guard
            if caller is None:
                raise Unauthenticated("send an API key or an OIDC token", field="Authorization")
            if caller.role not in rule.roles:
                raise Forbidden(f"role {caller.role} may not {request.method} {rule.template}")
            headers[HEADER] = runtime.sign(caller, audience=audience_for(service, rule.template),
                                           request_id=request_id)
        target = quote(public.removeprefix(prefix), safe="/:@!$&'()*+,;=-._~")
        try:
            upstream = await runtime.proxy.send(service, request.method, target,
                                                query=request.url.query, headers=headers,
                                                content=await request.body())
        except ServiceUnavailable as exc:
            return unavailable(exc)
        return _forwarded_response(upstream)

    forward.__name__ = f"forward_to_{service}"
    return forward


router = APIRouter()
for _service in SERVICES:
    router.add_api_route(f"/api/v1/{_service}/{{path:path}}", _forwarder(_service), methods=METHODS,
                         include_in_schema=False, name=f"proxy_{_service}")
