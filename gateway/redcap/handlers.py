"""Bus consumers of the REDCap integration: results to write back into REDCap."""

from __future__ import annotations

from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer
from services.core.events import Allocated, Envelope
from services.core.protocol import TrialProtocol

from . import service

ALLOCATED = Subscription("gateway-redcap-sync", (Allocated.subject,))


def consumers(protocol: TrialProtocol) -> list[Consumer]:
    def on_allocated(session: Session, env: Envelope) -> None:
        service.stage_allocation_write(session, env=env, allocated=env.payload(Allocated),
                                       protocol=protocol)

    return [Consumer(ALLOCATED.durable, ALLOCATED.subjects, on_allocated)]
