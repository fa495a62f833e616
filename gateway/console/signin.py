"""Signing in and out: an API key typed into a form (the embedded default), or the OIDC
authorization code flow with PKCE when an issuer and a client are configured. Both end
in a server-side session; sign-in, refusals and sign-out are recorded in the audit chain."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from urllib.parse import urlencode

import httpx
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.auth import errors
from gateway.security.authenticate import authenticate
from gateway.security.runtime import GatewayRuntime, runtime_of
from services.core import audit
from services.core.db import unit_of_work
from services.core.internal_token import Caller

from .pages import pages_for
from .web import COOKIE, PATH, PageRefused, VisitDep, console_of, cookie_attributes, form_of, render

log = structlog.get_logger(__name__)
router = APIRouter(prefix=PATH, include_in_schema=False)
PRE_COOKIE = "tailor_console_signin"
OIDC_PENDING_SECONDS = 600
OIDC_PENDING_MAX = 10_000  # sign-ins begun and not finished within OIDC_PENDING_SECONDS
ENDED = {"idle": "Your session ended after a period without activity. Please sign in again.",
         "absolute": "Your session reached its maximum length. Please sign in again.",
         "credential": "Your key or token is no longer accepted. Please sign in again.",
         "signed_out": "You are signed out."}


def _audit(runtime: GatewayRuntime, caller: Caller | None, action: str, **after: object) -> None:
    with unit_of_work(runtime.engine) as session:
        audit.append(session, actor=caller.subject if caller else "unknown",
                     role=caller.role.value if caller else "unknown", action=action,
                     entity_type="console_session", entity_id=caller.subject if caller else "-",
                     after=after or None,
                     correlation_id=structlog.contextvars.get_contextvars().get("request_id"))


def _home(caller: Caller) -> str:
    pages = pages_for(caller.role)
    return pages[0].path if pages else f"{PATH}/nothing"


def _start_session(request: Request, caller: Caller, bearer: str) -> str:
    token, _session = console_of(request).sessions.create(caller, bearer)
    return token


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, **cookie_attributes(request))
    response.delete_cookie(PRE_COOKIE, **cookie_attributes(request))


@router.get("", response_class=RedirectResponse)
@router.get("/", response_class=RedirectResponse)
async def console_home(request: Request) -> Response:
    session, _ = console_of(request).sessions.get(request.cookies.get(COOKIE))
    return RedirectResponse(_home(session.caller) if session else f"{PATH}/sign-in", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, ended: str | None = None) -> Response:
    csrf = secrets.token_urlsafe(32)
    settings = console_of(request).settings
    response = render(request, "sign_in.html", csrf=csrf, message=ENDED.get(ended or ""),
                      oidc=bool(settings.oidc_client_id and runtime_of(request).oidc))
    response.set_cookie(PRE_COOKIE, csrf, **cookie_attributes(request))
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    fields = await form_of(request, request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(8))
    runtime = runtime_of(request)
    key = fields.get("api_key", "").strip()
    client = (request.client.host if request.client else "unknown")
    decision = runtime.limiter.check(f"refused:{client}")
    if not decision.allowed:
        raise PageRefused(429, "Too many attempts", "too many refused sign-ins from this address; "
                          f"retry in {decision.retry_after_header} seconds")
    try:
        caller = await asyncio.to_thread(authenticate, runtime.engine, None, f"Bearer {key}")
    except errors.AuthenticationError as exc:
        log.warning("console.sign_in_refused", reason=exc.reason)
        csrf = secrets.token_urlsafe(32)
        response = render(request, "sign_in.html", status=401, csrf=csrf,
                          error="That API key was not accepted.", oidc=False)
        response.set_cookie(PRE_COOKIE, csrf, **cookie_attributes(request))
        return response
    await asyncio.to_thread(_audit, runtime, caller, "console.signed_in", method="api_key")
    redirect = RedirectResponse(_home(caller), status_code=303)
    _set_session_cookie(request, redirect, _start_session(request, caller, key))
    return redirect


@router.post("/sign-out")
async def sign_out(visit: VisitDep) -> Response:
    await form_of(visit.request, visit.session.csrf)
    console_of(visit.request).sessions.end(visit.token)
    await asyncio.to_thread(_audit, runtime_of(visit.request), visit.caller, "console.signed_out")
    response = RedirectResponse(f"{PATH}/sign-in?ended=signed_out", status_code=303)
    response.delete_cookie(COOKIE, **cookie_attributes(visit.request))
    return response


@router.get("/nothing", response_class=HTMLResponse)
async def nothing(visit: VisitDep) -> Response:
    return visit.render("nothing.html", None)


# --- OIDC authorization code flow with PKCE -------------------------------------------


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _redirect_uri(request: Request) -> str:
    configured = console_of(request).settings.oidc_redirect_uri
    return configured or str(request.url_for("oidc_callback"))


@router.get("/sign-in/oidc")
async def oidc_start(request: Request) -> Response:
    console, runtime = console_of(request), runtime_of(request)
    settings = console.settings
    if not (settings.oidc_client_id and settings.oidc_authorization_endpoint and runtime.oidc):
        raise PageRefused(404, "No identity provider", "sign in with an API key")
    now = time.monotonic()
    for state in [s for s, p in console.oidc_pending.items() if now - p[1] > OIDC_PENDING_SECONDS]:
        console.oidc_pending.pop(state, None)
    if len(console.oidc_pending) >= OIDC_PENDING_MAX:
        raise PageRefused(429, "Too many sign-ins in progress", "retry in a few minutes")
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    console.oidc_pending[state] = (verifier, now)
    query = urlencode({"response_type": "code", "client_id": settings.oidc_client_id,
                       "redirect_uri": _redirect_uri(request), "scope": settings.oidc_scope,
                       "state": state, "code_challenge": _challenge(verifier),
                       "code_challenge_method": "S256"})
    return RedirectResponse(f"{settings.oidc_authorization_endpoint}?{query}", status_code=303)


@router.get("/sign-in/oidc/callback", name="oidc_callback", response_class=HTMLResponse)
async def oidc_callback(request: Request, state: str = "", code: str = "") -> Response:
    console, runtime = console_of(request), runtime_of(request)
    pending = console.oidc_pending.pop(state, None) if state else None
    if pending is None or time.monotonic() - pending[1] > OIDC_PENDING_SECONDS or not code:
        raise PageRefused(400, "Sign-in not completed",
                          "the identity provider's answer is unknown or too old; start again")
    settings = console.settings
    try:
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            answer = await client.post(settings.oidc_token_endpoint or "", data={
                "grant_type": "authorization_code", "code": code, "code_verifier": pending[0],
                "redirect_uri": _redirect_uri(request), "client_id": settings.oidc_client_id})
        token = answer.json().get("access_token") if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        token = None
    if not isinstance(token, str) or runtime.oidc is None:
        raise PageRefused(502, "Sign-in not completed", "the identity provider gave no token")
    try:
        caller = await asyncio.to_thread(runtime.oidc.verify, token)
    except errors.AuthenticationError as exc:
        log.warning("console.oidc_refused", reason=exc.reason)
        raise PageRefused(401, "Sign-in refused", "the identity provider's token was not accepted") from None
    await asyncio.to_thread(_audit, runtime, caller, "console.signed_in", method="oidc")
    # The browser arrives here from the identity provider's site, so a SameSite=strict
    # cookie set now is withheld from a redirect; a same-site link (meta refresh) sends it.
    response = render(request, "signed_in.html", target=_home(caller))
    _set_session_cookie(request, response, _start_session(request, caller, token))
    return response
