"""Channel adapters: e-mail over SMTP (aiosmtplib) and SMS through a webhook-style provider.

Adapters raise the transport's own exceptions; `domain.classify_exception` judges them
(SMTP 4xx, timeouts, connection errors and provider 5xx/408/429 are transient). Phone and
letter reminders are not adapters: they become staff tasks in the database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib
import httpx

from ..runtime import NotificationSettings

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError,)


class ChannelUnavailable(RuntimeError):
    """The channel is not configured: retrying cannot help (a permanent failure)."""


@dataclass(frozen=True)
class Outgoing:
    key: str
    channel: str
    to: str = field(repr=False)
    subject: str | None = field(default=None, repr=False)
    body: str = field(default="", repr=False)


@dataclass(frozen=True)
class Receipt:
    provider_ref: str | None = None


def error_summary(exc: BaseException) -> str:
    """What is stored about a failure: the type and code, never the server's text (an SMTP
    reply may echo the recipient's address)."""
    code = getattr(exc, "code", None)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    refused = getattr(exc, "recipients", None)
    if isinstance(refused, list) and refused:
        code = getattr(refused[0], "code", None)
    detail = f" {code}" if isinstance(code, int) else (f" HTTP {status}" if status else "")
    return f"{type(exc).__name__}{detail}"[:120]


class EmailChannel:
    """A small pool of SMTP connections, reused across messages."""

    def __init__(self, settings: NotificationSettings, sender: str) -> None:
        self._settings = settings
        self._sender = sender
        self._pool: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(max(1, settings.smtp_connections)):
            self._pool.put_nowait(None)

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, start_tls=s.smtp_starttls,
            username=s.smtp_user,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout_seconds)
        await client.connect()
        return client

    async def acquire(self) -> aiosmtplib.SMTP | None:
        """A connection, opened ahead of the claim so the claim-to-send window stays short;
        None if connecting failed now (the send will try again and report the error)."""
        client = await self._pool.get()
        if client is not None and client.is_connected:
            return client
        try:
            return await self._connect()
        except Exception:
            return None

    def release(self, client: aiosmtplib.SMTP | None) -> None:
        self._pool.put_nowait(client)

    async def send(self, out: Outgoing, client: aiosmtplib.SMTP | None) -> tuple[
            Receipt, aiosmtplib.SMTP | None]:
        """Send on `client` (reconnecting if needed); the connection to give back."""
        msg = EmailMessage()
        msg["From"], msg["To"] = self._sender, out.to
        msg["Subject"] = out.subject or ""
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<{out.key}@notifications.tailor>"  # same key, same id
        msg.set_content(out.body)
        try:
            if client is None or not client.is_connected:
                client = await self._connect()
            await client.send_message(msg)
        except BaseException:
            if client is not None:
                client.close()
            raise
        return Receipt(), client

    async def close(self) -> None:
        while not self._pool.empty():
            client = self._pool.get_nowait()
            if client is not None and client.is_connected:
                try:
                    await asyncio.wait_for(client.quit(), 2)
                except Exception:
                    client.close()


class SmsChannel:
    """POST /v1/messages with an Idempotency-Key: the provider sends a repeated key once."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._settings = settings
        self._client = httpx.AsyncClient(base_url=settings.sms_url or "http://sms.invalid",
                                         timeout=settings.sms_timeout_seconds)

    async def send(self, out: Outgoing) -> Receipt:
        s = self._settings
        if not s.sms_url:
            raise ChannelUnavailable("no SMS provider configured (TAILOR_NOTIFICATIONS_SMS_URL)")
        headers = {"Idempotency-Key": out.key}
        if s.sms_api_key is not None:
            headers["Authorization"] = f"Bearer {s.sms_api_key.get_secret_value()}"
        body: dict[str, str] = {"to": out.to, "text": out.body.strip()}
        if s.sms_callback_url:
            body["callback_url"] = s.sms_callback_url
        response = await self._client.post("/v1/messages", json=body, headers=headers)
        response.raise_for_status()
        return Receipt(provider_ref=str(response.json().get("id") or "") or None)

    async def close(self) -> None:
        await self._client.aclose()
