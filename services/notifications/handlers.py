"""Bus consumers: parse the event, call the use case. Each runs in one transaction with
its inbox record (a redelivered event has no second effect)."""

from __future__ import annotations

from sqlmodel import Session

from services.core.consumers import Consumer
from services.core.events import (
    Allocated,
    Envelope,
    FormSavedForNotifications,
    SafetyObligationEscalated,
    SafetyObligationOpened,
)
from services.core.sealed_events import open_form_saved

from . import alerts, service
from .runtime import runtime_of


def on_allocated(session: Session, env: Envelope) -> None:
    service.schedule_participant(session, runtime_of(session), allocated=env.payload(Allocated),
                                 correlation_id=env.correlation_id)


def on_form_saved(session: Session, env: Envelope) -> None:
    rt = runtime_of(session)
    service.record_form_saved(session, rt, saved=open_form_saved(env, rt.bus_keyring),
                              correlation_id=env.correlation_id)


def on_safety_obligation(session: Session, env: Envelope) -> None:
    obligation: SafetyObligationOpened | SafetyObligationEscalated
    if env.subject == SafetyObligationEscalated.subject:
        obligation = env.payload(SafetyObligationEscalated)
    else:
        obligation = env.payload(SafetyObligationOpened)
    service.notify_safety(session, runtime_of(session), obligation=obligation,
                          correlation_id=env.correlation_id)


CONSUMERS = [
    Consumer("notifications-allocated", (Allocated.subject,), on_allocated),
    Consumer("notifications-form-saved", (FormSavedForNotifications.subject,), on_form_saved),
    Consumer("notifications-safety",
             (SafetyObligationOpened.subject, SafetyObligationEscalated.subject),
             on_safety_obligation),
    *alerts.CONSUMERS,
]
