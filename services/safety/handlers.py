"""Bus consumers of the safety service: parse the event, call the use case.

Handlers get (session, envelope) from the kernel; the protocol and the clock they need
come from the running kernel, bound at start-up (`bind`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import Session

from services.core.consumers import Consumer
from services.core.errors import InvalidInput as PoisonInput
from services.core.events import Allocated, Envelope, FormSavedForSafety
from services.core.sealed_events import open_form_saved

from . import intake, questionnaires
from .domain import SafetyError

if TYPE_CHECKING:
    from services.core.runner import Kernel

_bound: dict[str, Kernel] = {}


def bind(kernel: Kernel) -> None:
    """Called by the app's start-up hook, before the consumers start."""
    _bound["kernel"] = kernel


def _kernel() -> Kernel:
    try:
        return _bound["kernel"]
    except KeyError:
        raise RuntimeError("safety handlers used before the service started") from None


def on_form_saved(session: Session, env: Envelope) -> None:
    kernel = _kernel()
    saved = open_form_saved(env, kernel.extras["bus_keyring"])
    protocol, now = kernel.protocol, kernel.extras["now"]()
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


def on_allocated(session: Session, env: Envelope) -> None:
    kernel = _kernel()
    intake.record_allocation(session, allocated=env.payload(Allocated),
                             now=kernel.extras["now"](), correlation_id=env.correlation_id or env.id)


CONSUMERS = [
    Consumer("safety-form-saved", (FormSavedForSafety.subject,), on_form_saved),
    Consumer("safety-allocated", (Allocated.subject,), on_allocated),
]
