"""Where each process of the stack lives. The CLI is the only place that knows them all."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from services.core.bus_contract import Grant, Subscription
from services.core.runner import ServiceSpec, bus_grant
from services.core.runner import bus_subscriptions as bus_subscriptions_of

# Start order of `tailor up`: producers of facts after their consumers is not needed
# (JetStream keeps the facts), so the order only makes the log easier to read.
APPS: dict[str, str] = {
    "gateway": "gateway.app",
    "allocation": "services.allocation.app",
    "randomization": "services.randomization.app",
    "notifications": "services.notifications.app",
    "safety": "services.safety.app",
    "reports": "services.reports.app",
}


def existing() -> list[str]:
    return [name for name, module in APPS.items() if importlib.util.find_spec(module)]


def app_factory(name: str) -> Callable[[], FastAPI]:
    if name not in APPS:
        raise KeyError(f"unknown service {name!r}; known: {', '.join(APPS)}")
    return importlib.import_module(APPS[name]).create_app  # type: ignore[no-any-return]


def migrations_of(name: str) -> Path:
    return importlib.import_module(APPS[name]).SPEC.migrations  # type: ignore[no-any-return]


def specs() -> list[ServiceSpec]:
    """Every existing service's spec (imports each service: its bus contract lives there)."""
    return [importlib.import_module(APPS[name]).SPEC for name in existing()]


def bus_grants() -> list[Grant]:
    return [bus_grant(spec) for spec in specs()]


def bus_subscriptions() -> list[Subscription]:
    return [sub for spec in specs() for sub in bus_subscriptions_of(spec)]
