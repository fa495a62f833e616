"""The services' clock: UTC now, a file-shifted clock for demos, and the one place that
chooses between them. A service's bootstrap builds its clock once; tests hand in their own
through `build_app(overrides={"clock": …})`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class SimulatedClock:
    """UTC now plus an offset (seconds) read from a file: lets a demo or a training stack
    move the clock forward by weeks without waiting. Never on a production database:
    `clock_for` refuses it there."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        try:
            offset = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return utc_now() + timedelta(seconds=offset)


def clock_for(simulated_clock_file: Path | None, *, embedded: bool, setting: str) -> Clock:
    """`utc_now`, or the simulated clock when `setting` names a file (embedded SQLite only)."""
    if simulated_clock_file is None:
        return utc_now
    if not embedded:
        raise RuntimeError(f"{setting} is for demos on the embedded SQLite stack only")
    return SimulatedClock(simulated_clock_file)
