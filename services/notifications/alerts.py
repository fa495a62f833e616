"""Facts other services publish for a person to act on become follow-ups (staff tasks),
one per event: an unscorable baseline (or one whose stratification value is no level of its
factor), an emergency unblinding, a stratum running low, a
completed timepoint, a REDCap write-back REDCap refused for good. Summaries carry only
what the (blinded) event carries: never an arm, a cluster or a stratum.
"""

from __future__ import annotations

import hashlib
from functools import partial

from sqlmodel import Session

from services.core.audit import canonical_json
from services.core.bus_contract import DLQ_STREAM, Subscription
from services.core.consumers import Consumer
from services.core.events import (
    AllocationNeedsReview,
    BaselineNeedsReview,
    EmergencyUnblinded,
    Envelope,
    RedcapWriteFailed,
    StratumRunningLow,
    TimepointCompleted,
)

from .follow_ups import open_follow_up
from .runtime import Runtime
from .service import new_message, wake_after_commit

STAFF_ALERT = "staff_alert"


def _summary(env: Envelope) -> tuple[str, str | None, str]:
    """(kind, record, summary) for an alarm event."""
    match env.subject:
        case AllocationNeedsReview.subject:
            review = env.payload(AllocationNeedsReview)
            where = f" (field {review.field})" if review.field else ""
            return ("allocation_needs_review", review.record,
                    f"The baseline of {review.record} cannot be scored: {review.reason}{where}. "
                    f"{review.detail or ''} Correct it in REDCap; allocation waits until then.")
        case BaselineNeedsReview.subject:
            stratification = env.payload(BaselineNeedsReview)
            return ("allocation_needs_review", stratification.record,
                    f"The baseline of {stratification.record} cannot be randomized: "
                    f"{stratification.reason}. {stratification.detail}. Correct it in REDCap; "
                    "allocation waits until then.")
        case EmergencyUnblinded.subject:
            unblinded = env.payload(EmergencyUnblinded)
            return ("emergency_unblinded", unblinded.record,
                    f"Allocation {unblinded.allocation_number} of {unblinded.record} was unblinded "
                    f"in an emergency by {unblinded.unblinded_by} ({unblinded.role}): "
                    f"{unblinded.reason}. Document it and inform the trial team.")
        case StratumRunningLow.subject:
            low = env.payload(StratumRunningLow)
            return ("stratum_running_low", None,
                    f"{low.strata_running_low} stratum(s) of list {low.list_id} have fewer than "
                    f"{low.threshold} free slots (fewest: {low.fewest_free_slots}). The "
                    "statistician extends the list before it runs out.")
        case TimepointCompleted.subject:
            done = env.payload(TimepointCompleted)
            return ("timepoint_completed", done.record,
                    f"{done.record} completed {done.timepoint} after {done.reminders_sent} "
                    "reminder(s). Check the forms for completeness.")
        case RedcapWriteFailed.subject:
            failed = env.payload(RedcapWriteFailed)
            return ("redcap_write_failed", failed.record,
                    f"REDCap refused the {failed.kind} write-back for {failed.record} for good: "
                    f"{failed.error}. Enter it in REDCap by hand or fix the project.")
        case _:  # an event the REDCap sync gave up on (moved here by the bus)
            return ("dead_letter", env.record,
                    f"The REDCap sync gave up on {env.subject} (event {env.id}"
                    f"{', record ' + env.record if env.record else ''}). Inspect it with "
                    "`tailor dlq list` and replay it once the cause is fixed.")


def on_alarm(rt: Runtime, session: Session, env: Envelope) -> None:
    kind, record, summary = _summary(env)
    now, text = rt.now(), " ".join(summary.split())
    if open_follow_up(session, source=f"event:{env.id}", kind=kind, record=record,
                      summary=text, now=now) is None:
        return  # opened before: its e-mails were scheduled then
    for contact in rt.protocol.trial.contacts:  # and an e-mail to each of the trial team
        key = hashlib.sha256(f"alert\x1f{env.id}\x1f{contact.role}".encode()).hexdigest()[:40]
        session.add(new_message(key=key, kind=STAFF_ALERT, record=record or "", channel="email",
                                recipient=contact.role, ref=kind, due_at=now, now=now,
                                facts=canonical_json({"kind": kind, "summary": text})))
    wake_after_commit(session, rt)


ALARMS = (AllocationNeedsReview.subject, BaselineNeedsReview.subject, EmergencyUnblinded.subject,
          StratumRunningLow.subject, TimepointCompleted.subject)

ALARM_EVENTS = Subscription("notifications-alarms", ALARMS)
REDCAP_WRITE_FAILED = Subscription("notifications-redcap-write-failed",
                                   (RedcapWriteFailed.subject,), DLQ_STREAM)
SUBSCRIPTIONS = [ALARM_EVENTS, REDCAP_WRITE_FAILED]


def consumers(rt: Runtime) -> list[Consumer]:
    return [Consumer.on(subscription, partial(on_alarm, rt)) for subscription in SUBSCRIPTIONS]
