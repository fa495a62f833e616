"""The floor of bench/e2e.py: allocation and randomization replaced by pass-through handlers
that keep every hop (bus, outbox, inbox, one transaction each, audit heads and their
witnesses) but do no domain work: form_saved_for_allocation (baseline) → cluster_assigned →
allocated, with a plain counter as number. Payloads are opened and sealed as the real
services do (that is transport work).

Each pass-through runs as the service it stands in for (its bus user, durable, subjects
and port), since the bus lets only that service read its durable and publish its facts:

    python bench/passthrough.py allocation|randomization PORT
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datetime import UTC, datetime  # noqa: E402

from sqlmodel import Session  # noqa: E402

from services.core import audit, outbox  # noqa: E402
from services.core.consumers import Consumer  # noqa: E402
from services.core.events import (  # noqa: E402
    Allocated,
    ClusterAssigned,
    Envelope,
    FormSavedForAllocation,
    SealedCluster,
)
from services.core.runner import ServiceSpec, build_app, serve  # noqa: E402
from services.core.sealed_events import open_form_saved  # noqa: E402
from services.core.sealing import load_keyring  # noqa: E402
from services.core.settings import ServiceSettings  # noqa: E402
from tailor_cli.registry import bus_subscriptions, migrations_of  # noqa: E402

numbers = itertools.count(1)
HOME = Path(os.environ.get("TAILOR_HOME", ".tailor"))


@functools.cache
def keyring(name: str):  # type: ignore[no-untyped-def]
    return load_keyring(name, HOME, embedded=True)


def durable_of(subject: str) -> str:
    """The provisioned durable that reads `subject` (the real service's)."""
    return next(s.durable for s in bus_subscriptions() if subject in s.subjects)


def on_form(session: Session, env: Envelope) -> None:
    form = open_form_saved(env, keyring("allocation"))
    sealed = keyring("randomization").recipient().seal_json(
        {"cluster": "DYS", "probabilities": {}}, subject=ClusterAssigned.subject,
        record=form.record)
    outbox.enqueue(session, ClusterAssigned(record=form.record, sealed=sealed,
                                            model_version="passthrough", low_confidence=False),
                   producer="allocation", correlation_id=env.correlation_id, record=form.record)
    audit.append(session, actor="passthrough", role="system", action="prediction.created",
                 entity_type="prediction", entity_id=env.id, record=form.record)


def on_cluster(session: Session, env: Envelope) -> None:
    assigned = env.payload(ClusterAssigned)
    SealedCluster.model_validate(keyring("randomization").open_json(
        assigned.sealed, subject=ClusterAssigned.subject, record=assigned.record))
    outbox.enqueue(session, Allocated(record=assigned.record, allocation_number=f"X{next(numbers)}",
                                      module="PERT", allocated_at=datetime.now(UTC)),
                   producer="randomization", correlation_id=env.correlation_id,
                   record=assigned.record)
    audit.append(session, actor="passthrough", role="system", action="allocation.created",
                 entity_type="allocation", entity_id=env.id, record=assigned.record)


HANDLERS = {"allocation": (FormSavedForAllocation.subject, on_form),
            "randomization": (ClusterAssigned.subject, on_cluster)}

if __name__ == "__main__":
    name, port = sys.argv[1], int(sys.argv[2])
    subject, handle = HANDLERS[name]
    spec = ServiceSpec(name=name, migrations=migrations_of(name),
                       consumers=[Consumer(durable_of(subject), (subject,), handle)])
    app = build_app(spec, own=ServiceSettings(name=name,
                                              database_url=f"sqlite:///{HOME / f'{name}.db'}"))
    serve(app, host="127.0.0.1", port=port)
