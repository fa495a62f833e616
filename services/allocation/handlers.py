"""Bus consumers of the allocation service: parse the event, call the use case."""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core.consumers import Consumer
from services.core.errors import InvalidInput
from services.core.events import Envelope, FormSaved
from services.core.protocol import TrialProtocol

from . import service
from .domain import ClusterPredictor


@dataclass(frozen=True)
class Loaded:
    """What the consumer needs beyond the message: set by the start-up hook."""

    protocol: TrialProtocol
    predictor: ClusterPredictor


# Keyed by the service's engine (one per running kernel), so two services in one
# process (tests) never share a model; the consumer edge hands handlers only a session.
_LOADED: WeakKeyDictionary[Engine, Loaded] = WeakKeyDictionary()


def attach(engine: Engine, loaded: Loaded) -> None:
    _LOADED[engine] = loaded


def loaded_for(session: Session) -> Loaded:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    try:
        return _LOADED[engine]
    except KeyError:  # a consumer started before the model: retried until it is loaded
        raise RuntimeError("the allocation model is not loaded yet") from None


def on_form_saved(session: Session, env: Envelope) -> None:
    loaded = loaded_for(session)
    try:
        saved = env.payload(FormSaved)
    except ValidationError as exc:  # a broken contract never heals: dead-letter it
        raise InvalidInput(f"not a form_saved payload: {exc.errors()[:3]}") from None
    outcome = service.record_form_saved(
        session, saved=saved,
        trigger=service.Trigger(event_id=env.id, correlation_id=env.correlation_id or env.id),
        protocol=loaded.protocol, predictor=loaded.predictor)
    if outcome in service.COUNTED:
        # counted once the transaction holding the outcome has committed
        event.listen(session, "after_commit",
                     lambda _s: service.PREDICTIONS.labels(outcome.value).inc(), once=True)


CONSUMERS = [
    Consumer("allocation-form-saved", (FormSaved.subject,), on_form_saved),
]
