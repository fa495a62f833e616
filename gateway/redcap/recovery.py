"""What the drains know of REDCap's health: after a failure, each drain tries one waiting
row every `recovery_probe_seconds` whatever its own retry delay, and the first answer from
REDCap makes every waiting row due at once. Per-row backoff alone would leave a backlog
sleeping for minutes after REDCap came back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core.db import unit_of_work

from . import repository


class Recovery:
    def __init__(self, engine: Engine, probe_seconds: float) -> None:
        self._engine = engine
        self._probe_seconds = probe_seconds
        self._lock = threading.Lock()
        # Unknown at start-up: rows may be waiting out delays from before a restart.
        self._failing = True
        self._last_probe: dict[str, float] = {}

    def failed(self) -> None:
        with self._lock:
            self._failing = True

    def answered(self, now: datetime) -> None:
        """REDCap answered: release the rows waiting out a retry delay (once per recovery)."""
        with self._lock:
            if not self._failing:
                return
            self._failing = False
        with unit_of_work(self._engine) as session:
            repository.release_backoff(session, now)

    def due(self, name: str, due: Callable[[Session], list], waiting: Callable[[Session], list]
            ) -> Callable[[Session], list]:  # type: ignore[type-arg]
        """`due`, or while REDCap fails and nothing is due, one waiting row now and then."""
        def rows(session: Session) -> list:  # type: ignore[type-arg]
            found = due(session)
            if found or not self._failing:
                return found
            clock = time.monotonic()
            with self._lock:
                if clock - self._last_probe.get(name, float("-inf")) < self._probe_seconds:
                    return found
                self._last_probe[name] = clock
            return waiting(session)
        return rows
