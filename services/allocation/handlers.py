"""Bus consumers of the allocation service: parse the event, call the use case."""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import Session

from services.core.consumers import Consumer, EventHandler
from services.core.events import Envelope, FormSaved
from services.core.protocol import TrialProtocol
from services.core.runner import Kernel

from . import service
from .domain import ClusterPredictor


def form_saved_handler(protocol: TrialProtocol, predictor: ClusterPredictor) -> EventHandler:
    def on_form_saved(session: Session, env: Envelope) -> None:
        saved = env.payload(FormSaved)  # a broken contract never heals: dead-lettered at once
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
    return [Consumer("allocation-form-saved", (FormSaved.subject,), handle)]
