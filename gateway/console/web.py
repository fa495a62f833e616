"""What every console page shares: the console's running state, the signed-in visit,
CSRF checks on forms, rendering, and the answers to refusals (sign in again, 403, 400)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.core.internal_token import Caller

from .client import CredentialRejected, GatewayClient
from .pages import BY_KEY, Page, may, pages_for
from .sessions import ConsoleSession, Ended, SessionStore
from .settings import ConsoleSettings

log = structlog.get_logger(__name__)

COOKIE = "tailor_console"
PATH = "/console"
TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
MAX_FORM_BYTES = 256 * 1024


@dataclass
class ConsoleRuntime:
    settings: ConsoleSettings
    sessions: SessionStore
    oidc_pending: dict[str, Any] = field(default_factory=dict)  # state → (verifier, nonce, at)

    @classmethod
    def from_settings(cls, settings: ConsoleSettings) -> ConsoleRuntime:
        return cls(settings, SessionStore(idle=timedelta(minutes=settings.idle_minutes),
                                          absolute=timedelta(hours=settings.absolute_hours)))


def console_of(request: Request) -> ConsoleRuntime:
    return request.app.state.console  # type: ignore[no-any-return]


class SignInRequired(Exception):
    def __init__(self, reason: Ended | str) -> None:
        super().__init__(str(reason))
        self.reason = str(reason)


class PageRefused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass
class Visit:
    """One signed-in request: who, their session, and their way to the API."""

    request: Request
    token: str
    session: ConsoleSession
    api: GatewayClient

    @property
    def caller(self) -> Caller:
        return self.session.caller

    def may(self, method: str, route: str) -> bool:
        return may(self.caller.role, method, route)

    def require(self, page_key: str) -> Page:
        page = BY_KEY[page_key]
        if not page.open_to(self.caller.role):
            raise PageRefused(403, "Not for your role",
                              f"the role {self.caller.role.value} may not open {page.title}")
        return page

    def render(self, template: str, page: Page | None, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, status=status, visit=self, page=page, **context)

    def done(self, to: str, kind: str, text: str) -> RedirectResponse:
        """After a POST: the message for the next page, and a redirect to it (303)."""
        self.session.flash(kind, text)
        return RedirectResponse(to, status_code=303)


def _request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


async def signed_in(request: Request) -> Visit:
    token = request.cookies.get(COOKIE)
    session, ended = console_of(request).sessions.get(token)
    if session is None or token is None:
        raise SignInRequired(ended)
    return Visit(request, token, session,
                 GatewayClient(request.app, session.bearer, request_id=_request_id()))


VisitDep = Annotated[Visit, Depends(signed_in)]


def same_origin(request: Request) -> bool:
    """A browser names the page a form came from; it must be this console."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin is None  # no header at all: not a browser's cross-site form
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def form_of(request: Request, expected_csrf: str) -> dict[str, str]:
    """The posted form, once its CSRF token and origin are checked (403 otherwise)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PageRefused(413, "Form too large", f"a form may hold at most {MAX_FORM_BYTES} bytes")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                           keep_blank_values=True).items()}
    presented = fields.pop("csrf", "")
    if not same_origin(request) or not hmac.compare_digest(presented.encode(), expected_csrf.encode()):
        log.warning("console.csrf_refused", path=request.url.path)
        raise PageRefused(403, "Form refused",
                          "this form's security token is missing or stale: reload the page and try again")
    return fields


async def visit_form(visit: Visit) -> dict[str, str]:
    return await form_of(visit.request, visit.session.csrf)


def render(request: Request, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    visit: Visit | None = context.get("visit")
    context.setdefault("page", None)
    if visit is not None:
        context["nav"] = pages_for(visit.caller.role)
        context["csrf"] = visit.session.csrf
        context["flashes"] = visit.session.take_flashes()
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


def cookie_attributes(request: Request) -> dict[str, Any]:
    return {"path": PATH, "httponly": True, "samesite": "strict",
            "secure": console_of(request).settings.secure_cookie}


def _to_sign_in(request: Request, exc: SignInRequired) -> Response:
    target = f"{PATH}/sign-in" + (f"?ended={exc.reason}" if exc.reason != Ended.NONE else "")
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(COOKIE, **cookie_attributes(request))
    return response


def _refused(request: Request, exc: PageRefused) -> Response:
    visit = None
    session, _ = console_of(request).sessions.get(request.cookies.get(COOKIE))
    if session is not None:
        visit = Visit(request, request.cookies.get(COOKIE, ""), session,
                      GatewayClient(request.app, session.bearer))
    return render(request, "refused.html", status=exc.status, visit=visit, title=exc.title,
                  detail=exc.detail)


def _credential_rejected(request: Request, exc: CredentialRejected) -> Response:
    console_of(request).sessions.end(request.cookies.get(COOKIE))
    return _to_sign_in(request, SignInRequired("credential"))


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, _to_sign_in)  # type: ignore[arg-type]
    app.add_exception_handler(PageRefused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(CredentialRejected, _credential_rejected)  # type: ignore[arg-type]
