"""Composition root of the notifications service: builds its typed dependencies (`Runtime`)
once from the running kernel; routes, consumers and jobs receive them, never look them up."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from services.core.clock import clock_for
from services.core.db import is_sqlite
from services.core.protocol import ProtocolError
from services.core.runner import Kernel
from services.core.sealing import load_keyring
from services.core.survey_links import survey_link_secret_once

from .crypto import ContactCipher, load_contact_key
from .dispatch.compose import SafetyNotices
from .domain import ContentGuard, MessageRenderer
from .models import ReminderCap
from .runtime import NotificationSettings, Runtime


def bootstrap(kernel: Kernel) -> Runtime:
    check_reminder_cap(kernel)
    settings = NotificationSettings()
    embedded, home = is_sqlite(kernel.engine), Path(kernel.settings.home)
    clock = clock_for(settings.simulated_clock_file, embedded=embedded,
                      setting="TAILOR_NOTIFICATIONS_SIMULATED_CLOCK_FILE")
    key = load_contact_key(settings.contact_key, home, allow_generate=embedded)
    return Runtime(
        kernel=kernel, settings=settings, clock=clock, cipher=ContactCipher(key),
        renderer=MessageRenderer(kernel.protocol),
        bus_keyring=load_keyring(kernel.name, home, embedded=embedded),
        safety_notices=SafetyNotices(kernel.protocol),
        alert_guard=ContentGuard.from_protocol(kernel.protocol),
        survey_link_secret=survey_link_secret_once(home, embedded=embedded))


def check_reminder_cap(kernel: Kernel) -> None:
    """The cap in the database's CHECK constraint must be the protocol's (see migration 0002)."""
    with Session(kernel.engine) as session:
        row = session.get(ReminderCap, 1)
    wanted = kernel.protocol.reminders.max_per_timepoint
    if row is None or row.max_per_timepoint != wanted:
        raise ProtocolError(
            f"reminders.max_per_timepoint: the protocol says {wanted}, the database enforces "
            f"{row.max_per_timepoint if row else 'nothing'}; changing the cap needs a migration")
