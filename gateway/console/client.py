"""The console's way to the data: the gateway's own public API, called in-process with
the signed-in person's credential.

Each call goes through the whole gateway (guard, permission table, rate limit, the audit
of participant reads, the proxy to the owning service), exactly as if the person had
called the API themselves, so a page can never show what the API would refuse them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp

INTERNAL_BASE = "http://gateway.console"


class CredentialRejected(Exception):
    """The gateway no longer accepts the session's credential (revoked, expired)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        """What went wrong, in the API's own words (its problem document)."""
        if isinstance(self.body, dict):
            detail = self.body.get("detail")
            if isinstance(detail, str):
                return detail
            if isinstance(detail, list) and detail and isinstance(detail[0], dict):
                first = detail[0]
                where = ".".join(str(p) for p in first.get("loc", ())[1:])
                return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
        return f"the request was answered with status {self.status}"

    @property
    def unavailable(self) -> bool:
        return self.status in (404, 502, 503, 504) or self.status >= 500


class GatewayClient:
    def __init__(self, app: ASGIApp, bearer: str, *, request_id: str | None = None) -> None:
        self._app = app
        self._headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
        if request_id:
            self._headers["X-Request-ID"] = request_id

    async def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                   json_body: Any = None, content: bytes | None = None,
                   content_type: str | None = None, accept: str | None = None) -> Answer:
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        transport = httpx.ASGITransport(app=self._app, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url=INTERNAL_BASE) as client:
            response = await client.request(method, path, params=_clean(params), headers=headers,
                                            content=content)
        if response.status_code == 401:
            raise CredentialRejected(path)
        body: Any = None
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        return Answer(response.status_code, body, response.text, response.headers)

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None) -> Answer:
        return await self.call("POST", path, json_body=body if body is not None else {})


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not params:
        return None
    return {k: v for k, v in params.items() if v not in (None, "", [])}
