"""The floor of bench/e2e.py: allocation and randomization replaced by pass-through handlers
that keep every hop (bus, outbox, inbox, one transaction each) but do no domain work:
form_saved (baseline) → cluster_assigned → allocated, with a plain counter as number."""

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
from services.core.events import Allocated, ClusterAssigned, Envelope, FormSaved  # noqa: E402
from services.core.runner import ServiceSpec, build_app, serve  # noqa: E402
from services.core.settings import ServiceSettings  # noqa: E402

numbers = itertools.count(1)


def on_form(session: Session, env: Envelope) -> None:
    form = env.payload(FormSaved)
    outbox.enqueue(session, ClusterAssigned(record=form.record, cluster="DYS", probabilities={},
                                            model_version="passthrough", low_confidence=False),
                   producer="passthrough", correlation_id=env.correlation_id, record=form.record)


def on_cluster(session: Session, env: Envelope) -> None:
    assigned = env.payload(ClusterAssigned)
    outbox.enqueue(session, Allocated(record=assigned.record, allocation_number=f"X{next(numbers)}",
                                      module="PERT", allocated_at=datetime.now(UTC)),
                   producer="passthrough", correlation_id=env.correlation_id, record=assigned.record)


SPEC = ServiceSpec(
    name="passthrough", migrations=Path(__file__).resolve().parent.parent / "gateway" / "migrations",
    consumers=[Consumer("passthrough-form", (FormSaved.subject,), on_form),
               Consumer("passthrough-cluster", (ClusterAssigned.subject,), on_cluster)])

if __name__ == "__main__":
    home = Path(os.environ.get("TAILOR_HOME", ".tailor"))
    app = build_app(SPEC, own=ServiceSettings(name="passthrough",
                                              database_url=f"sqlite:///{home / 'passthrough.db'}"))
    serve(app, host="127.0.0.1", port=0)
