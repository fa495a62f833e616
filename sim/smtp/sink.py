"""An SMTP server that records every message it accepts, and fails on request.

Stand-in for the site's mail relay in the demo and tests: a real aiosmtpd server on a real
socket, so the client code under test speaks real SMTP. It can be told to answer a
transient `451` to the next N messages (at end of DATA, after which the client may retry)
or a permanent `550` to given recipients (at RCPT).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import socket
import sqlite3
import ssl
import threading
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_SCHEMA = """CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, received_at TEXT NOT NULL, mail_from TEXT NOT NULL,
    rcpt_tos TEXT NOT NULL, data BLOB NOT NULL)"""


@dataclass(frozen=True)
class ReceivedMessage:
    seq: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    received_at: datetime

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""


class SmtpSink:
    """aiosmtpd handler + server. Controls are thread-safe (the server may run in a thread)."""

    def __init__(
        self,
        *,
        folder: Path | None = None,
        sqlite_path: Path | None = None,
        credentials: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        reply_delay: float = 0.0,
    ) -> None:
        self._lock = threading.Lock()
        self.reply_delay = reply_delay
        self._messages: list[ReceivedMessage] = []
        self._fail_next = 0
        self._fail_reply = ""
        self._rejected: dict[str, str] = {}
        self.refused = 0  # messages answered with a transient failure
        self.folder = folder
        self.sqlite_path = sqlite_path
        self.credentials = credentials
        self.tls_context = tls_context
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        # Messages are personal data: the folder 0700, every file 0600, whatever the umask.
        if folder is not None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.chmod(0o700)
        if sqlite_path is not None:
            if not sqlite_path.exists():
                os.close(os.open(sqlite_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            with sqlite3.connect(sqlite_path) as db:
                db.execute(_SCHEMA)

    # ── controls ────────────────────────────────────────────────────────────────
    def fail_next(self, n: int, code: int = 451, text: str = "4.3.0 Try again later") -> None:
        """Answer `code text` at end of DATA for the next `n` messages (not recorded)."""
        with self._lock:
            self._fail_next, self._fail_reply = n, f"{code} {text}"

    def reject(self, *recipients: str, code: int = 550,
               text: str = "5.1.1 Mailbox unavailable") -> None:
        """Refuse these recipients at RCPT with `code text`, every time."""
        with self._lock:
            self._rejected.update({r.lower(): f"{code} {text}" for r in recipients})

    def reset(self) -> None:
        with self._lock:
            self._messages.clear()
            self._fail_next, self._rejected, self.refused = 0, {}, 0

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]

    async def wait_for(self, count: int) -> list[ReceivedMessage]:
        """The messages once at least `count` have arrived (wrap in asyncio.timeout)."""
        # Polled, not an asyncio.Event: the server may run on another thread's loop.
        while len(self.messages) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return self.messages

    # ── aiosmtpd handler hooks ──────────────────────────────────────────────────
    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            refusal = self._rejected.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.reply_delay:  # a slow mail server: the client waits for its 250
            await asyncio.sleep(self.reply_delay)
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                self.refused += 1
                return self._fail_reply
            msg = ReceivedMessage(
                seq=len(self._messages) + 1, mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos), data=bytes(envelope.original_content or b""),
                received_at=datetime.now(UTC))
            self._messages.append(msg)
        self._persist(msg)
        return f"250 OK queued as {msg.seq}"

    def _persist(self, msg: ReceivedMessage) -> None:
        if self.folder is not None:
            head = (f"X-Sink-Mail-From: {msg.mail_from}\r\n"
                    f"X-Sink-Rcpt-To: {', '.join(msg.rcpt_tos)}\r\n").encode()
            fd = os.open(self.folder / f"{msg.seq:06d}.eml",
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(head + msg.data)
        if self.sqlite_path is not None:
            with sqlite3.connect(self.sqlite_path) as db:
                db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", (
                    msg.seq, msg.received_at.isoformat(), msg.mail_from,
                    json.dumps(msg.rcpt_tos), msg.data))

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.credentials)
        return AuthResult(success=ok, handled=False)  # let aiosmtpd send 235 or 535

    # ── serving ─────────────────────────────────────────────────────────────────
    def _protocol(self) -> SMTP:
        auth: dict[str, Any] = {}
        if self.credentials is not None:
            auth = {"auth_required": True, "auth_require_tls": self.tls_context is not None,
                    "authenticator": self._authenticate}
        with warnings.catch_warnings():  # AUTH without TLS is deliberate in a local sink
            warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
            return SMTP(self, hostname="tailor-smtp-sink", enable_SMTPUTF8=True,
                        tls_context=self.tls_context, loop=asyncio.get_running_loop(), **auth)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> SmtpSink:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host, port)
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[SmtpSink]:
        """Serve on the running loop (port 0: a free port, read back from `.port`)."""
        await self.start(host, port)
        try:
            yield self
        finally:
            await self.stop()

    def start_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> SmtpSink:
        """Serve from a background thread with its own loop, for synchronous callers."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            loop.run_until_complete(self.start(host, port))
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("SMTP sink did not start")
        return self

    def stop_thread(self) -> None:
        if self._thread is not None and self._thread_loop is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join(10)
            self._thread = self._thread_loop = None


def wait_until_listening(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port (for process tests)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
