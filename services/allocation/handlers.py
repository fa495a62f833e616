"""Bus consumers of the allocation service: parse the event, call the use case."""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer, EventHandler
from services.core.events import Envelope, FormSavedForAllocation
from services.core.protocol import TrialProtocol
from services.core.sealed_events import open_form_saved
from services.core.sealing import Keyring, Recipient

from . import service
from .bootstrap import AllocationDeps
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


def consumers(deps: AllocationDeps) -> list[Consumer]:
    """Built from what the bootstrap verified and loaded: the model and the bus keys."""
    handle = form_saved_handler(deps.kernel.protocol, deps.predictor, deps.bus_keyring,
                                deps.randomization_key)
    return [Consumer.on(FORM_SAVED, handle)]
