"""Bus consumers of the allocation service: parse the event, call the use case."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import event
from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer, EventHandler
from services.core.errors import InvalidInput
from services.core.events import Envelope, FormSaved
from services.core.protocol import TrialProtocol
from services.core.runner import Kernel

from . import service
from .domain import ClusterPredictor

FORM_SAVED = Subscription("allocation-form-saved", (FormSaved.subject,))


def form_saved_handler(protocol: TrialProtocol, predictor: ClusterPredictor) -> EventHandler:
    def on_form_saved(session: Session, env: Envelope) -> None:
        try:
            saved = env.payload(FormSaved)
        except ValidationError as exc:  # a broken contract never heals: dead-letter it
            raise InvalidInput(f"not a form_saved payload: {exc.errors()[:3]}") from None
        outcome = service.record_form_saved(
            session, saved=saved, protocol=protocol, predictor=predictor,
            trigger=service.Trigger(event_id=env.id, correlation_id=env.correlation_id or env.id))
        if outcome in service.COUNTED:
            # counted once the transaction holding the outcome has committed
            event.listen(session, "after_commit",
                         lambda _s: service.PREDICTIONS.labels(outcome.value).inc(), once=True)

    return on_form_saved


def consumers(kernel: Kernel) -> list[Consumer]:
    """Built by the kernel after the start-up hooks, so the verified model is loaded."""
    handle = form_saved_handler(kernel.protocol, kernel.extras["predictor"])
    return [Consumer(FORM_SAVED.durable, FORM_SAVED.subjects, handle)]
