"""Use cases fed by the bus: the REDCap adverse-event form and allocations.

A REDCap `adverse_event` instance is one case, found again by (record, event, repeat
instance): a redelivered or duplicated save finds its case, and an identical re-save
changes nothing. A changed re-save becomes a follow-up version whose reason is the
form's `ae_followup_reason`, or `RESAVED_REASON` when the site left it blank.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlmodel import Session

from services.core import audit
from services.core.events import Allocated, FormSaved
from services.core.protocol import TrialProtocol

from . import repository
from .domain import InvalidAdverseEvent, adverse_event_from_redcap, follow_up, open_case
from .models import SafetyParticipant, SafetyRedcapInstance
from .service import Actor, store_version

log = structlog.get_logger(__name__)

RESAVED_REASON = "re-saved in REDCap by the site (no follow-up reason given)"
INCOMPLETE = 0  # REDCap form status "Incomplete": a draft the site is still typing


def redcap_case_id(record: str, redcap_event: str, repeat_instance: int) -> str:
    """Stable case id of one REDCap AE instance (instances are numbered per event)."""
    return "-".join(p for p in ("ae", record, redcap_event, str(repeat_instance)) if p)


def record_adverse_event_form(session: Session, *, saved: FormSaved, protocol: TrialProtocol,
                              now: datetime, correlation_id: str | None) -> str | None:
    """Open or follow up the case of this AE instance; the case id, or None if nothing changed.

    An invalid draft (form still "Incomplete") is skipped; an invalid form marked
    unverified or complete raises `InvalidAdverseEvent` naming the REDCap fields.
    """
    rules = protocol.safety
    form = rules.redcap_form
    actor = Actor(subject="redcap", role="redcap", correlation_id=correlation_id)
    try:
        parsed = adverse_event_from_redcap(saved.fields, participant=saved.record, form=form,
                                           timezone=form.site_timezone, now=now)
    except InvalidAdverseEvent as err:
        if saved.complete_status == INCOMPLETE:
            log.info("safety.ae_draft_skipped", record=saved.record, problems=err.fields)
            return None
        raise
    event_name, instance = saved.event or "", saved.repeat_instance or 1
    known = repository.redcap_instance(session, saved.record, event_name, instance)
    if known is None:
        case = open_case(redcap_case_id(saved.record, event_name, instance), parsed.event,
                         recorded_by=actor.subject)
        store_version(session, case, actor=actor, source="redcap", rules=rules, now=now)
        session.add(SafetyRedcapInstance(record=saved.record, redcap_event=event_name,
                                         repeat_instance=instance, case_id=case.case_id))
        return case.case_id
    existing = repository.load_case(session, known.case_id)
    if existing is None or parsed.event == existing.latest.event:
        return None  # identical re-save or redelivery: nothing new
    updated = follow_up(existing, parsed.event, reason=parsed.follow_up_reason or RESAVED_REASON,
                        received_at=max(now, existing.latest.received_at), recorded_by=actor.subject)
    store_version(session, updated, actor=actor, source="redcap", rules=rules, now=now)
    return updated.case_id


def record_allocation(session: Session, *, allocated: Allocated, now: datetime,
                      correlation_id: str | None) -> bool:
    """Remember the participant's module and allocation time (blinded: never an arm)."""
    row = repository.participant(session, allocated.record)
    after = {"module": allocated.module, "allocation_number": allocated.allocation_number,
             "allocated_at": allocated.allocated_at}
    if row is not None and (row.module, row.allocation_number, row.allocated_at) == (
            allocated.module, allocated.allocation_number, allocated.allocated_at):
        return False
    before = None if row is None else {"module": row.module, "allocation_number":
                                       row.allocation_number, "allocated_at": row.allocated_at}
    row = row or SafetyParticipant(record=allocated.record, module=allocated.module,
                                   allocation_number=allocated.allocation_number,
                                   allocated_at=allocated.allocated_at, updated_at=now)
    row.module, row.allocation_number = allocated.module, allocated.allocation_number
    row.allocated_at, row.updated_at = allocated.allocated_at, now
    session.add(row)
    audit.append(session, actor="randomization", role="system", action="participant.allocated",
                 entity_type="participant", entity_id=allocated.record, record=allocated.record,
                 before=before, after=after, correlation_id=correlation_id)
    return True
