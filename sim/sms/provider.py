"""A small SMS provider with a webhook-style API, for the demo and tests.

    POST /v1/messages   {"to": "+4917…", "text": "…", "callback_url": optional}
                        headers: Authorization: Bearer <api key> (if configured),
                                 Idempotency-Key: <client key> (same key → same message)
        202 {"id": "sms_…", "status": "accepted"}   accepted; a status callback follows
        200 {"id": …, "status": …}                  repeated Idempotency-Key: nothing new sent
        400 invalid or rejected number · 401 bad api key   (permanent)
        503 provider busy                                  (transient: retry)
    GET  /v1/messages[/{id}]

After a delay the provider POSTs the outcome to the callback URL, signed:
    {"callback_id", "id", "reference", "status": "delivered"|"failed", "error_code", "occurred_at"}
    X-Signature-Timestamp: <unix seconds>
    X-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>
Outcomes (503, failed, delay) are drawn from Random(seed, idempotency key or sequence,
attempt): the same seed and requests give the same outcomes in every run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, Header, HTTPException, Response
from pydantic import BaseModel, Field

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class SmsConfig:
    seed: int = 0
    reject_rate: float = 0.0     # share of requests answered 503 (transient)
    fail_rate: float = 0.0       # share of accepted messages later reported failed
    delay: tuple[float, float] = (0.05, 0.2)  # seconds until the status callback
    callback_url: str | None = None            # default when a request names none
    secret: bytes = b"sim-sms-secret"
    api_key: str | None = None
    duplicate_callbacks: bool = False          # deliver every callback twice
    callback_attempts: int = 4


@dataclass
class SmsMessage:
    id: str
    to: str
    text: str
    reference: str | None
    status: str                  # accepted → delivered | failed
    callback_url: str | None
    accepted_at: str
    error_code: str | None = None
    callbacks: int = 0           # callbacks the receiver acknowledged with 2xx


class SendRequest(BaseModel):
    to: str
    text: str = Field(min_length=1, max_length=1600)
    callback_url: str | None = None


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


@dataclass
class SmsProvider:
    config: SmsConfig = field(default_factory=SmsConfig)
    messages: dict[str, SmsMessage] = field(default_factory=dict)
    _by_reference: dict[str, str] = field(default_factory=dict)
    _attempts: Counter[str] = field(default_factory=Counter)
    _fail_next: list[int] = field(default_factory=list)   # queued HTTP statuses
    _blocked: set[str] = field(default_factory=set)
    _requests: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # ── controls ────────────────────────────────────────────────────────────────
    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next `n` send requests with `status` before anything else."""
        self._fail_next.extend([status] * n)

    def block(self, *numbers: str) -> None:
        """Refuse these numbers with 400 (a permanent failure)."""
        self._blocked.update(numbers)

    # ── decisions ───────────────────────────────────────────────────────────────
    def _rng(self, reference: str, attempt: int) -> random.Random:
        return random.Random(f"{self.config.seed}|{reference}|{attempt}")

    def accept(self, req: SendRequest, reference: str | None) -> tuple[int, SmsMessage | None]:
        """Decide one send request; (HTTP status, message or None)."""
        if reference is not None and reference in self._by_reference:
            return 200, self.messages[self._by_reference[reference]]
        self._requests += 1
        if self._fail_next:
            return self._fail_next.pop(0), None
        if not E164.match(req.to) or req.to in self._blocked:
            return 400, None
        key = reference or f"#{self._requests}"
        self._attempts[key] += 1
        rng = self._rng(key, self._attempts[key])
        if rng.random() < self.config.reject_rate:
            return 503, None
        failed = rng.random() < self.config.fail_rate
        msg = SmsMessage(
            id=f"sms_{len(self.messages) + 1:08d}", to=req.to, text=req.text,
            reference=reference, status="accepted",
            callback_url=req.callback_url or self.config.callback_url,
            accepted_at=datetime.now(UTC).isoformat(),
            error_code="30003" if failed else None)
        self.messages[msg.id] = msg
        if reference is not None:
            self._by_reference[reference] = msg.id
        delay = rng.uniform(*self.config.delay)
        self._spawn(self._report(msg, "failed" if failed else "delivered", delay))
        return 202, msg

    # ── callbacks ───────────────────────────────────────────────────────────────
    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _report(self, msg: SmsMessage, outcome: str, delay: float) -> None:
        await asyncio.sleep(delay)
        msg.status = outcome
        if msg.callback_url is None:
            return
        body = json.dumps({
            "callback_id": f"cb_{msg.id}", "id": msg.id, "reference": msg.reference,
            "status": outcome, "error_code": msg.error_code,
            "occurred_at": datetime.now(UTC).isoformat(),
        }).encode()
        for _ in range(2 if self.config.duplicate_callbacks else 1):
            if await self._post(msg.callback_url, body):
                msg.callbacks += 1

    async def _post(self, url: str, body: bytes) -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            for attempt in range(self.config.callback_attempts):
                ts = int(time.time())
                headers = {"Content-Type": "application/json", "X-Signature-Timestamp": str(ts),
                           "X-Signature": sign(self.config.secret, ts, body)}
                try:
                    r = await client.post(url, content=body, headers=headers)
                    if r.is_success:
                        return True
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1 * 2**attempt)
        return False

    async def settle(self) -> None:
        """Wait until every pending status callback has been attempted."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


def create_app(provider: SmsProvider) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await provider.close()

    app = FastAPI(title="SMS provider simulator", lifespan=lifespan)

    @app.post("/v1/messages", status_code=202)
    async def send(
        req: SendRequest,
        response: Response,
        authorization: Annotated[str | None, Header()] = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        key = provider.config.api_key
        if key is not None and authorization != f"Bearer {key}":
            raise HTTPException(401, "missing or wrong api key")
        status, msg = provider.accept(req, idempotency_key)
        if msg is None:
            detail = "invalid or blocked number" if status == 400 else "provider busy, retry"
            raise HTTPException(status, detail)
        response.status_code = status
        return {"id": msg.id, "status": msg.status}

    @app.get("/v1/messages")
    async def list_messages() -> list[dict[str, Any]]:
        return [asdict(m) for m in provider.messages.values()]

    @app.get("/v1/messages/{message_id}")
    async def get_message(message_id: str) -> dict[str, Any]:
        if message_id not in provider.messages:
            raise HTTPException(404, "no such message")
        return asdict(provider.messages[message_id])

    return app
