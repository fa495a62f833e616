"""The HTTP edge every service shares: problem+json errors, request ids, RED metrics,
the one-transaction-per-request session dependency, health and metrics routes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import structlog
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics, outbox
from .db import ping, unit_of_work
from .errors import DomainError

if TYPE_CHECKING:
    from .runner import Kernel

log = structlog.get_logger(__name__)
PROBLEM = "application/problem+json"
D = TypeVar("D")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: no access line


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    """The one mapping of errors to RFC 9457 problems: a service's routes raise its typed
    domain errors (status, title, field, extensions) and never build a problem themselves."""
    @app.exception_handler(DomainError)
    async def _domain(_req: Request, exc: DomainError) -> JSONResponse:
        extra = {"field": exc.field} if exc.field else {}
        return problem(exc.status, exc.title, exc.detail, **extra, **exc.extensions())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_path(tuple(e["loc"])), "message": e["msg"]}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    # The database refused for now (down, locked, a deadlock victim): the transaction was
    # rolled back, so nothing changed and the same request may simply be sent again.
    @app.exception_handler(OperationalError)
    async def _database_busy(_req: Request, exc: OperationalError) -> JSONResponse:
        log.error("http.database_unavailable", error=type(exc.orig).__name__)
        response = problem(503, "Database unavailable",
                           "the database could not complete the request; nothing was changed, "
                           "retry shortly")
        response.headers["Retry-After"] = "2"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.exception("http.unhandled_error", error=type(exc).__name__)
        return problem(500, "Internal error", "The request could not be completed; it was logged.")


CALLER_REQUEST_ID = "caller_request_id"


def _printable_id(raw: bytes) -> str:
    """A caller's request id as a label: printable ASCII, at most 64 characters."""
    text = raw.decode("latin-1")[:64]
    return text if text.isascii() and text.isprintable() else ""


class EdgeMiddleware:
    """Request id in and out, bound to every log line; RED metrics by route template; one
    access-log line per request (route template, never the raw path or query string: no
    participant id, no DET secret).

    Inside the cluster the caller is the gateway, whose `X-Request-ID` is the correlation
    id. At the public edge (`trust_request_id=False`) the id is always generated here; a
    caller's own id is kept apart, bound as `caller_request_id`, so no caller chooses the
    correlation id under which their actions are recorded."""

    def __init__(self, app: ASGIApp, service: str, trust_request_id: bool = True,
                 access_log: bool = False) -> None:
        self.app = app
        self.service = service
        self.trust_request_id = trust_request_id
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = _printable_id(headers.get(b"x-request-id", b""))
        request_id = (given if self.trust_request_id else "") or uuid.uuid4().hex
        bound = {"request_id": request_id}
        if given and not self.trust_request_id:
            bound[CALLER_REQUEST_ID] = given
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        with structlog.contextvars.bound_contextvars(**bound):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                method = scope.get("method", "GET")
                metrics.HTTP_REQUESTS.labels(self.service, method, template,
                                             f"{status // 100}xx").inc()
                elapsed = time.perf_counter() - started
                metrics.HTTP_SECONDS.labels(self.service, method, template).observe(elapsed)
                if self.access_log and template not in QUIET_ROUTES:
                    log.info("http.access", method=method, route=template, status=status,
                             ms=round(elapsed * 1000, 1))


def kernel_of(request: Request) -> Kernel:
    return request.app.state.kernel  # type: ignore[no-any-return]


def deps_dependency(kind: type[D]) -> Callable[[Request], D]:
    """A FastAPI dependency returning the service's typed dependencies, built once by its
    bootstrap (`app.state.deps`): `Annotated[XDeps, Depends(deps_dependency(XDeps))]`."""
    def deps(request: Request) -> D:
        built = request.app.state.deps
        if not isinstance(built, kind):
            raise TypeError(f"app.state.deps is {type(built).__name__}, not {kind.__name__}")
        return built
    deps.__name__ = f"{kind.__name__.lower()}_of"
    return deps


def _session(request: Request) -> Iterator[Session]:
    kernel = kernel_of(request)
    with unit_of_work(kernel.engine) as session:
        yield session
    if outbox.staged(session):
        kernel.relay.wake()


# One transaction per request, committed before the response is sent.
SessionDep = Annotated[Session, Depends(_session, scope="function")]
KernelDep = Annotated["Kernel", Depends(kernel_of)]


def health_router(*, metrics: bool = True) -> APIRouter:
    """Probes, and `/metrics` unless it is served on its own port (TAILOR_METRICS_PORT)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz", summary="Can do its job: database, NATS and what the service needs")
    async def readyz(request: Request) -> JSONResponse:
        kernel = kernel_of(request)
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(ping, kernel.engine)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["nats"] = "ok" if kernel.bus.connected else "unreachable"
        # The service's own needs (keys, REDCap…): each check names what is missing or None.
        for name, check in kernel.readiness.items():
            found: str | None = await asyncio.to_thread(check)
            checks[name] = found or "ok"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    if metrics:
        @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
        async def prometheus() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
