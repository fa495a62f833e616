"""Baseline saves of a design without a prediction step (no allocation service): what the
allocation service does for a personalized design, done here before allocating.

- A withdrawal mark seen in any REDCap event is kept (`withdrawal_seen`, audited): the
  participant is not allocated while it stands, even when the baseline completes later,
  and a request parked for them (no list yet) is dropped. A mark taken back on the same
  withdrawal form is a data-entry correction and lifts it (audited).
- A complete baseline whose stratification value is no level of its factor goes to
  review: a `baseline_review` row, an audit entry and `BaselineNeedsReview` on the bus
  (the trial team's follow-up), once per (participant, field), naming the field and what
  it must hold, never the value. The next save with a valid value allocates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlmodel import Session

from services.core import audit, outbox
from services.core.events import BaselineNeedsReview, FormSaved
from services.core.protocol import TrialProtocol

from .domain.baseline import marked_withdrawn, must_hold
from .models import BaselineReview, ParkedAllocation, WithdrawalSeen

log = structlog.get_logger(__name__)

ACTOR = "service:randomization"
PRODUCER = "randomization"


@dataclass(frozen=True)
class Trigger:
    """The bus event that brought the save, for the audit trail."""

    event_id: str
    correlation_id: str


def note_withdrawal(session: Session, saved: FormSaved, trigger: Trigger,
                    protocol: TrialProtocol) -> bool:
    """Keep the withdrawal mark seen in any event; True while it stands."""
    marked = marked_withdrawn(protocol, saved.fields)
    seen = session.get(WithdrawalSeen, saved.record)
    if marked and seen is None:
        session.add(WithdrawalSeen(record=saved.record, event=saved.event,
                                   seen_at=datetime.now(UTC), trigger_event_id=trigger.event_id))
        audit.append(session, actor=ACTOR, role="system", action="withdrawal.recorded",
                     entity_type="withdrawal", entity_id=saved.record, record=saved.record,
                     after={"event": saved.event, "trigger_event_id": trigger.event_id},
                     correlation_id=trigger.correlation_id)
        _drop_parked(session, saved.record, trigger)
        return True
    if (seen is not None and not marked and saved.event == seen.event
            and saved.instrument == protocol.redcap.withdrawal_form):
        session.delete(seen)
        audit.append(session, actor=ACTOR, role="system", action="withdrawal.retracted",
                     entity_type="withdrawal", entity_id=saved.record, record=saved.record,
                     before={"event": seen.event, "trigger_event_id": seen.trigger_event_id},
                     after={"trigger_event_id": trigger.event_id},
                     reason=f"{protocol.redcap.fields.withdrawn} no longer 1 on the "
                            "withdrawal form",
                     correlation_id=trigger.correlation_id)
        return False
    return marked or seen is not None


def _drop_parked(session: Session, record: str, trigger: Trigger) -> None:
    """A participant who withdrew while waiting for a list is not allocated when it comes."""
    parked = session.get(ParkedAllocation, record)
    if parked is None:
        return
    session.delete(parked)
    audit.append(session, actor=ACTOR, role="system", action="allocation.parked_dropped",
                 entity_type="allocation_request", entity_id=record, record=record,
                 reason="withdrawn while waiting for a list",
                 correlation_id=trigger.correlation_id)


def request_review(session: Session, *, record: str, field: str, protocol: TrialProtocol,
                   trigger: Trigger) -> bool:
    """Ask staff to correct a stratification field: once per (participant, field).
    Returns False when it was asked before."""
    reason = f"{field}: missing, or not a level of its stratification factor"
    detail = must_hold(protocol, field)
    if session.get(BaselineReview, (record, reason)) is not None:
        return False
    session.add(BaselineReview(record=record, reason=reason, field=field, detail=detail,
                               created_at=datetime.now(UTC), trigger_event_id=trigger.event_id))
    audit.append(session, actor=ACTOR, role="system", action="allocation.needs_review",
                 entity_type="review_request", entity_id=record, record=record,
                 after={"reason": reason, "field": field, "trigger_event_id": trigger.event_id},
                 reason=detail, correlation_id=trigger.correlation_id)
    outbox.enqueue(session, BaselineNeedsReview(record=record, reason=reason, field=field,
                                                detail=detail),
                   producer=PRODUCER, correlation_id=trigger.correlation_id, record=record)
    log.warning("allocation.needs_review", record=record, field=field)
    return True
