"""The reports consumer: one durable consumer over every subject the read model needs, so
the facts arrive in stream order (the same order a rebuild replays).

Subjects (what it reads of each):
- `trial.v1.redcap.form_saved_for_reports` (sealed to this service): screening eligibility
  and date, consent and its date, the
  withdrawal form's flag, date, reason and preventable class, the AE form's seriousness, the
  NEQ items and their attribution, and each form's complete status;
- `trial.v1.randomization.allocated`: record, module, time (never arm or cluster);
- `trial.v1.notifications.timepoint_completed`: record, timepoint, time, reminders sent;
- `trial.v1.notifications.diary_prompts_counted`: record, ISO week, the change in diary
  prompts sent and answered in time.

The protocol comes from the running kernel, bound at start-up (`bind`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from services.core.consumers import Consumer
from services.core.events import Envelope

from .projection import SUBJECTS, apply

if TYPE_CHECKING:
    from services.core.runner import Kernel

DURABLE = "reports-events"
_bound: dict[str, Kernel] = {}


def bind(kernel: Kernel) -> None:
    """Called by the app's start-up hook, before the consumers start."""
    _bound["kernel"] = kernel


def on_event(session: Session, env: Envelope) -> None:
    try:
        kernel = _bound["kernel"]
    except KeyError:
        raise RuntimeError("reports handlers used before the service started") from None
    apply(session, env, kernel.protocol, kernel.extras["bus_keyring"])


CONSUMERS = [Consumer(DURABLE, SUBJECTS, on_event)]
