"""Composition root of the notifications service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from sqlmodel import Session

from services.core.protocol import ProtocolError
from services.core.runner import Kernel, ServiceSpec, build_app

from .api import router
from .dispatch.loop import dispatcher, housekeeping
from .handlers import CONSUMERS
from .models import ReminderCap
from .runtime import attach


def check_reminder_cap(kernel: Kernel) -> None:
    """The cap in the database's CHECK constraint must be the protocol's (see migration 0002)."""
    with Session(kernel.engine) as session:
        row = session.get(ReminderCap, 1)
    wanted = kernel.protocol.reminders.max_per_timepoint
    if row is None or row.max_per_timepoint != wanted:
        raise ProtocolError(
            f"reminders.max_per_timepoint: the protocol says {wanted}, the database enforces "
            f"{row.max_per_timepoint if row else 'nothing'}; changing the cap needs a migration")


SPEC = ServiceSpec(
    name="notifications",
    title="Tailor notifications",
    description="Assessment schedules, reminders to non-responders, diary prompts, "
                "safety notices; durable, idempotent dispatch.",
    migrations=Path(__file__).parent / "migrations",
    routers=[router],
    consumers=CONSUMERS,
    on_startup=[check_reminder_cap, attach],
    background=[dispatcher, housekeeping],
)


def create_app() -> FastAPI:
    return build_app(SPEC)
