"""Bus consumers of the safety service: parse the event, call the use case. The protocol,
the clock and the bus key come from the service's `SafetyDeps` (see bootstrap.py)."""

from __future__ import annotations

from functools import partial

from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer
from services.core.errors import InvalidInput as PoisonInput
from services.core.events import Allocated, Envelope, FormSavedForSafety
from services.core.sealed_events import open_form_saved

from . import intake, questionnaires
from .bootstrap import SafetyDeps
from .domain import SafetyError

FORM_SAVED = Subscription("safety-form-saved", (FormSavedForSafety.subject,))
ALLOCATED = Subscription("safety-allocated", (Allocated.subject,))
SUBSCRIPTIONS = [FORM_SAVED, ALLOCATED]


def on_form_saved(deps: SafetyDeps, session: Session, env: Envelope) -> None:
    saved = open_form_saved(env, deps.bus_keyring)
    protocol, now = deps.kernel.protocol, deps.now()
    form = protocol.safety.redcap_form
    correlation_id = env.correlation_id or env.id
    try:
        if saved.instrument == protocol.redcap.adverse_event_form:
            intake.record_adverse_event_form(session, saved=saved, protocol=protocol, now=now,
                                             correlation_id=correlation_id)
        elif saved.instrument in (form.neq_instrument, form.inep_instrument):
            kind: questionnaires.Instrument = (
                "neq" if saved.instrument == form.neq_instrument else "inep")
            questionnaires.record_questionnaire_form(
                session, saved=saved, kind=kind, rules=protocol.safety, now=now,
                correlation_id=correlation_id)
    except SafetyError as err:  # a form the rules refuse: retrying cannot help
        raise PoisonInput(f"{saved.instrument} of record {saved.record}: {err}",
                          field=err.field) from err


def on_allocated(deps: SafetyDeps, session: Session, env: Envelope) -> None:
    intake.record_allocation(session, allocated=env.payload(Allocated),
                             now=deps.now(), correlation_id=env.correlation_id or env.id)


def consumers(deps: SafetyDeps) -> list[Consumer]:
    return [Consumer.on(FORM_SAVED, partial(on_form_saved, deps)),
            Consumer.on(ALLOCATED, partial(on_allocated, deps))]
