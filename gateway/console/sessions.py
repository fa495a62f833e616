"""Server-side console sessions.

The browser holds only a random token (cookie); the store keeps, under the token's hash,
who signed in, the credential the console presents on their behalf, the CSRF token and
the session's clock. Sessions live in the gateway process: a restart signs everyone out,
and several gateway replicas need sticky sessions for the console."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from services.core.internal_token import Caller


def _now() -> datetime:
    return datetime.now(UTC)


class Ended(StrEnum):
    NONE = "none"  # no cookie, or one the store does not know
    IDLE = "idle"
    ABSOLUTE = "absolute"


@dataclass
class ConsoleSession:
    caller: Caller
    bearer: str = field(repr=False)  # never logged, never sent to the browser
    csrf: str = field(repr=False)
    created_at: datetime
    last_seen: datetime
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) for the next page

    def flash(self, kind: str, text: str) -> None:
        self.flashes.append((kind, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, *, idle: timedelta, absolute: timedelta,
                 clock: Callable[[], datetime] = _now) -> None:
        self.idle, self.absolute, self.clock = idle, absolute, clock
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def create(self, caller: Caller, bearer: str) -> tuple[str, ConsoleSession]:
        """A new session and the token for the cookie (shown nowhere else)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = ConsoleSession(caller=caller, bearer=bearer, csrf=secrets.token_urlsafe(32),
                                 created_at=now, last_seen=now)
        with self._lock:
            self._prune(now)
            self._sessions[_key(token)] = session
        return token, session

    def get(self, token: str | None) -> tuple[ConsoleSession | None, Ended]:
        """The live session for a token (its idle clock restarted), or why there is none."""
        if not token:
            return None, Ended.NONE
        now = self.clock()
        with self._lock:
            session = self._sessions.get(_key(token))
            if session is None:
                return None, Ended.NONE
            ended = self._ended(session, now)
            if ended is not Ended.NONE:
                del self._sessions[_key(token)]
                return None, ended
            session.last_seen = now
            return session, Ended.NONE

    def end(self, token: str | None) -> ConsoleSession | None:
        if not token:
            return None
        with self._lock:
            return self._sessions.pop(_key(token), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _ended(self, session: ConsoleSession, now: datetime) -> Ended:
        if now - session.created_at >= self.absolute:
            return Ended.ABSOLUTE
        if now - session.last_seen >= self.idle:
            return Ended.IDLE
        return Ended.NONE

    def _prune(self, now: datetime) -> None:
        for key in [k for k, s in self._sessions.items() if self._ended(s, now) is not Ended.NONE]:
            del self._sessions[key]
