"""Fault injection for `/api/`: make REDCap answer with an error status or answer slowly.

A fault applies to the next `remaining` API calls (all calls when None), optionally only
to some `content` values. "stall" delays the call and then answers it normally, like a
slow REDCap that finishes the work after an impatient client gave up.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

FaultMode = Literal["error", "stall"]


@dataclass(frozen=True)
class Fault:
    mode: FaultMode
    status: int = 500
    seconds: float = 0.0
    remaining: int | None = None
    contents: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "contents": list(self.contents)}


class FaultSwitch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fault: Fault | None = None

    def set(self, fault: Fault | None) -> None:
        with self._lock:
            self._fault = fault

    def current(self) -> Fault | None:
        with self._lock:
            return self._fault

    def take(self, content: str) -> Fault | None:
        """The fault for this call, if any; counts the call against `remaining`."""
        with self._lock:
            fault = self._fault
            if fault is None or (fault.contents and content not in fault.contents):
                return None
            if fault.remaining is not None:
                left = fault.remaining - 1
                self._fault = replace(fault, remaining=left) if left > 0 else None
            return fault
