"""Bus consumers: parse the event, call the use case. Each runs in one transaction with
its inbox record (a redelivered event has no second effect)."""

from __future__ import annotations

from functools import partial

from sqlmodel import Session

from services.core.bus_contract import Subscription
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
from .runtime import Runtime

ALLOCATED = Subscription("notifications-allocated", (Allocated.subject,))
FORM_SAVED = Subscription("notifications-form-saved", (FormSavedForNotifications.subject,))
SAFETY = Subscription("notifications-safety",
                      (SafetyObligationOpened.subject, SafetyObligationEscalated.subject))
SUBSCRIPTIONS = [ALLOCATED, FORM_SAVED, SAFETY, *alerts.SUBSCRIPTIONS]


def on_allocated(rt: Runtime, session: Session, env: Envelope) -> None:
    service.schedule_participant(session, rt, allocated=env.payload(Allocated),
                                 correlation_id=env.correlation_id)


def on_form_saved(rt: Runtime, session: Session, env: Envelope) -> None:
    service.record_form_saved(session, rt, saved=open_form_saved(env, rt.bus_keyring),
                              correlation_id=env.correlation_id)


def on_safety_obligation(rt: Runtime, session: Session, env: Envelope) -> None:
    obligation: SafetyObligationOpened | SafetyObligationEscalated
    if env.subject == SafetyObligationEscalated.subject:
        obligation = env.payload(SafetyObligationEscalated)
    else:
        obligation = env.payload(SafetyObligationOpened)
    service.notify_safety(session, rt, obligation=obligation,
                          correlation_id=env.correlation_id)


def consumers(rt: Runtime) -> list[Consumer]:
    return [
        Consumer.on(ALLOCATED, partial(on_allocated, rt)),
        Consumer.on(FORM_SAVED, partial(on_form_saved, rt)),
        Consumer.on(SAFETY, partial(on_safety_obligation, rt)),
        *alerts.consumers(rt),
    ]
