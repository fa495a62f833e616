"""Hygiene of every exchange: security headers on each response; bodies bounded in size,
of a known media type, and strict JSON (no duplicate keys, no NaN or Infinity, UTF-8)."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.http import problem
from services.core.roles import Credential, RoutePermission

from .guard import RULE

# An API answer is data, never a page to render, frame or cache.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Console pages are pages: their own stylesheet and script, their own forms, nothing else.
CONSOLE_CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
JSON_TYPES = ("application/json",)
ACCEPTED_TYPES = frozenset({"application/json", "text/csv", "application/x-www-form-urlencoded"})
UPLOAD_TYPES = frozenset({"text/csv"})


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        console = scope["path"] == "/console" or scope["path"].startswith("/console/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if console:  # a form's Origin must be sent for the console's CSRF check
                    headers["Content-Security-Policy"] = CONSOLE_CSP
                    headers["Referrer-Policy"] = "same-origin"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class StrictJsonError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise StrictJsonError(f"the key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _no_constants(name: str) -> Any:
    raise StrictJsonError(f"{name} is not JSON")


def check_strict_json(body: bytes) -> None:
    try:
        json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates,
                   parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise StrictJsonError("the body is not UTF-8") from None
    except RecursionError:
        raise StrictJsonError("the body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise StrictJsonError(f"malformed JSON at line {exc.lineno} column {exc.colno}") from None


class BodyTooLarge(Exception):
    """A streamed upload went past its limit: the request is abandoned with a 413."""


class BodyLimits:
    """Bounds every body by who is asking, before it is read.

    Without a bearer token (DET, SMS callback): at most `max_unauthenticated` bytes are
    read, then 413; the secret or signature is checked on that small body only. With one
    (the guard has authenticated the caller by now): JSON and forms up to `max_body`, read
    once, checked strictly and handed on unchanged; an upload route's CSV up to
    `max_upload`, streamed through and counted, never held whole in the gateway."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int,
                 max_unauthenticated: int = 64 * 1024) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_unauthenticated = max_unauthenticated

    def _limit(self, rule: RoutePermission | None, media_type: str) -> tuple[int, bool]:
        """The byte limit and whether the body is streamed rather than buffered."""
        if rule is None or rule.credential is not Credential.BEARER:
            return self.max_unauthenticated, False
        if rule.upload and media_type in UPLOAD_TYPES:
            return self.max_upload, True
        return self.max_body, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        limit, streamed = self._limit(scope.get("state", {}).get(RULE), media_type)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(scope, receive, send, limit)
            return
        if streamed:
            await self._stream(scope, receive, send, limit)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _too_large(scope, receive, send, limit)
                return
        if body:
            refusal = _refusal(media_type, bytes(body))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        started = False
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(scope, receive, send, limit)


def _refusal(media_type: str, body: bytes) -> Any:
    if media_type not in ACCEPTED_TYPES:
        return problem(415, "Unsupported media type",
                       f"send the body as one of {', '.join(sorted(ACCEPTED_TYPES))}",
                       field="Content-Type")
    if media_type in JSON_TYPES:
        try:
            check_strict_json(body)
        except StrictJsonError as exc:
            return problem(400, "Malformed JSON", str(exc), field="body")
    return None


async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = problem(413, "Request body too large", f"the body may hold at most {limit} bytes",
                       field="body")
    await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay
