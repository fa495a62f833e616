"""Bus consumers of the allocation service: parse the event, call the use case."""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer, EventHandler
from services.core.events import Envelope, FormSavedForAllocation
from services.core.protocol import TrialProtocol
from services.core.runner import Kernel
from services.core.sealed_events import open_form_saved
from services.core.sealing import Keyring, Recipient

from . import service
from .domain import ClusterPredictor

FORM_SAVED = Subscription("allocation-form-saved", (FormSavedForAllocation.subject,))


def form_saved_handler(protocol: TrialProtocol, predictor: ClusterPredictor, keyring: Keyring,
                       seal_to: Recipient) -> EventHandler:
    def on_form_saved(session: Session, env: Envelope) -> None:
        saved = open_form_saved(env, keyring)  # a broken or foreign payload is poison
        outcome = service.record_form_saved(
            session, saved=saved, protocol=protocol, predictor=predictor, seal_to=seal_to,
            trigger=service.Trigger(event_id=env.id, correlation_id=env.correlation_id or env.id))
        if outcome in service.COUNTED:
            # counted once the transaction holding the outcome has committed
            event.listen(session, "after_commit",
                         lambda _s: service.PREDICTIONS.labels(outcome.value).inc(), once=True)

    return on_form_saved


def consumers(kernel: Kernel) -> list[Consumer]:
    """Built by the kernel after the start-up hooks, so the verified model and the bus keys
    are loaded."""
    handle = form_saved_handler(kernel.protocol, kernel.extras["predictor"],
                                kernel.extras["bus_keyring"], kernel.extras["randomization_key"])
    return [Consumer(FORM_SAVED.durable, FORM_SAVED.subjects, handle)]
