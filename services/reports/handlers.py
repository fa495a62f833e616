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

The protocol and the bus key come from the service's `ReportsDeps` (see bootstrap.py).
"""

from __future__ import annotations

from functools import partial

from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer
from services.core.events import Envelope

from .bootstrap import ReportsDeps
from .projection import SUBJECTS, apply

EVENTS = Subscription("reports-events", SUBJECTS)
DURABLE = EVENTS.durable
SUBSCRIPTIONS = [EVENTS]


def on_event(deps: ReportsDeps, session: Session, env: Envelope) -> None:
    apply(session, env, deps.kernel.protocol, deps.bus_keyring)


def consumers(deps: ReportsDeps) -> list[Consumer]:
    return [Consumer.on(EVENTS, partial(on_event, deps))]
