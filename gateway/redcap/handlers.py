"""Bus consumers of the REDCap integration: results to write back into REDCap."""

from __future__ import annotations

from sqlmodel import Session

from services.core.bus_contract import Subscription
from services.core.consumers import Consumer
from services.core.errors import PermanentError
from services.core.events import Allocated, Envelope, StageAllocated
from services.core.protocol import TrialProtocol

from . import service

ALLOCATED = Subscription("gateway-redcap-sync", (Allocated.subject,))
# SMART: each later stage's allocation, written to the stage's own REDCap fields.
STAGE_ALLOCATED = Subscription("gateway-redcap-stage-sync", (StageAllocated.subject,))


def consumers(protocol: TrialProtocol, keys: service.FormKeys | None = None) -> list[Consumer]:
    def on_allocated(session: Session, env: Envelope) -> None:
        service.stage_allocation_write(session, env=env, allocated=env.payload(Allocated),
                                       protocol=protocol)

    def on_stage_allocated(session: Session, env: Envelope) -> None:
        keyring = keys.stage_options if keys is not None else None
        if keyring is None:
            raise PermanentError("no gateway bus key to open the stage option (REDCap is not "
                                 "configured, or the protocol has no stages)")
        service.stage_stage_write(session, env=env, allocated=env.payload(StageAllocated),
                                  protocol=protocol, keyring=keyring)

    found = [Consumer(ALLOCATED.durable, ALLOCATED.subjects, on_allocated)]
    if protocol.randomization.stages:
        found.append(Consumer(STAGE_ALLOCATED.durable, STAGE_ALLOCATED.subjects,
                              on_stage_allocated))
    return found
