"""Composition root of the reports service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.core.db import is_sqlite
from services.core.protocol import ProtocolError
from services.core.runner import Kernel, ServiceSpec, build_app
from services.core.sealing import load_keyring

from . import handlers
from .api import router
from .config import ReportsConfig, SimulatedClock, utc_now
from .metrics import keep_gauges_fresh


def configure(kernel: Kernel) -> None:
    """Deployment settings and the clock (tests replace `extras["now"]` to freeze time)."""
    if kernel.protocol.reports is None:
        raise ProtocolError(f"{kernel.settings.protocol_file}: reports: required key is missing "
                            "(the feasibility criteria the reports service evaluates)")
    config = kernel.extras.setdefault("config", ReportsConfig())
    if config.simulated_clock_file is not None:
        if kernel.engine.dialect.name != "sqlite":
            raise RuntimeError("TAILOR_REPORTS_SIMULATED_CLOCK_FILE: demos only, never with "
                               f"a {kernel.engine.dialect.name} database")
        kernel.extras.setdefault("now", SimulatedClock(config.simulated_clock_file))
    kernel.extras.setdefault("now", utc_now)
    # Its own bus key opens the saves sealed to it; a missing key refuses start-up.
    kernel.extras["bus_keyring"] = load_keyring(kernel.name, kernel.settings.home,
                                                embedded=is_sqlite(kernel.engine))
    handlers.bind(kernel)


SPEC = ServiceSpec(
    name="reports",
    title="Tailor reports",
    description="CONSORT flow, feasibility verdicts, recruitment, retention: a read model of the bus.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    consumers=handlers.CONSUMERS,
    on_startup=[configure],
    background=[keep_gauges_fresh],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
