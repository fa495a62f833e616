"""Bus consumers of the REDCap integration: results to write back into REDCap."""

from __future__ import annotations

from sqlmodel import Session

from services.core.consumers import Consumer
from services.core.events import Allocated, Envelope
from services.core.protocol import TrialProtocol

from . import service


def consumers(protocol: TrialProtocol) -> list[Consumer]:
    def on_allocated(session: Session, env: Envelope) -> None:
        service.stage_allocation_write(session, env=env, allocated=env.payload(Allocated),
                                       protocol=protocol)

    return [Consumer("gateway-redcap-sync", (Allocated.subject,), on_allocated)]
