"""The floor of bench/e2e.py: allocation and randomization replaced by pass-through handlers
that keep every hop (bus, outbox, inbox, one transaction each) but do no domain work:
form_saved_for_allocation (baseline) → cluster_assigned → allocated, with a plain counter as
number. Payloads are opened and sealed as the real services do (that is transport work)."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datetime import UTC, datetime  # noqa: E402

from sqlmodel import Session  # noqa: E402

from services.core import outbox  # noqa: E402
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

numbers = itertools.count(1)
HOME = Path(os.environ.get("TAILOR_HOME", ".tailor"))
ALLOCATION_KEY = load_keyring("allocation", HOME, embedded=True)
RANDOMIZATION_KEY = load_keyring("randomization", HOME, embedded=True)


def on_form(session: Session, env: Envelope) -> None:
    form = open_form_saved(env, ALLOCATION_KEY)
    sealed = RANDOMIZATION_KEY.recipient().seal_json(
        {"cluster": "DYS", "probabilities": {}}, subject=ClusterAssigned.subject,
        record=form.record)
    outbox.enqueue(session, ClusterAssigned(record=form.record, sealed=sealed,
                                            model_version="passthrough", low_confidence=False),
                   producer="passthrough", correlation_id=env.correlation_id, record=form.record)


def on_cluster(session: Session, env: Envelope) -> None:
    assigned = env.payload(ClusterAssigned)
    SealedCluster.model_validate(RANDOMIZATION_KEY.open_json(
        assigned.sealed, subject=ClusterAssigned.subject, record=assigned.record))
    outbox.enqueue(session, Allocated(record=assigned.record, allocation_number=f"X{next(numbers)}",
                                      module="PERT", allocated_at=datetime.now(UTC)),
                   producer="passthrough", correlation_id=env.correlation_id, record=assigned.record)


SPEC = ServiceSpec(
    name="passthrough", migrations=Path(__file__).resolve().parent.parent / "gateway" / "migrations",
    consumers=[Consumer("passthrough-form", (FormSavedForAllocation.subject,), on_form),
               Consumer("passthrough-cluster", (ClusterAssigned.subject,), on_cluster)])

if __name__ == "__main__":
    app = build_app(SPEC, own=ServiceSettings(name="passthrough",
                                              database_url=f"sqlite:///{HOME / 'passthrough.db'}"))
    serve(app, host="127.0.0.1", port=0)
