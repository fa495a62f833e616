"""Follow-ups: staff tasks for what no machine may settle alone.

An e-mail whose sender vanished mid-send is `unknown` (SMTP cannot tell whether it went
out, and sending it again could remind twice): a person checks with the participant and
resends it, confirms it went out, or confirms it did not. The participant's next planned
reminder goes out meanwhile: an `unknown` message holds nothing back beyond counting
towards the reminder cap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, select

from services.core.errors import Conflict, InvalidInput, NotFound

from . import repository
from .diary_tally import count_change
from .domain import DeliveryState
from .domain.diary_weeks import answered_in_time
from .models import FollowUp, Message
from .runtime import Runtime
from .service import record_change, wake_after_commit

UNKNOWN_EMAIL = "unknown_email"
Resolution = Literal["resend", "sent", "not_sent", "done"]
# What each resolution of an unknown e-mail does to its message.
_MESSAGE_STATE: dict[str, DeliveryState] = {
    "resend": DeliveryState.SCHEDULED, "sent": DeliveryState.SENT,
    "not_sent": DeliveryState.FAILED}


def open_follow_up(session: Session, *, source: str, kind: str, summary: str, now: datetime,
                   record: str | None = None, message_key: str | None = None) -> FollowUp | None:
    """Open a follow-up once per `source`; None when it already exists."""
    if session.exec(select(FollowUp).where(FollowUp.source == source)).first() is not None:
        return None
    follow_up = FollowUp(source=source, kind=kind, record=record, message_key=message_key,
                         summary=summary, created_at=now)
    session.add(follow_up)
    session.flush()
    record_change(session, action="follow_up.opened", entity_type="follow_up",
                  entity_id=str(follow_up.id), record=record,
                  after={"kind": kind, "source": source})
    return follow_up


def open_for_unknown_email(session: Session, rt: Runtime, msg: Message) -> None:
    what = f"{msg.kind} {msg.timepoint or ''} #{msg.attempt or 1}".replace("  ", " ")
    open_follow_up(
        session, source=f"message:{msg.key}", kind=UNKNOWN_EMAIL, record=msg.record,
        message_key=msg.key, now=rt.now(),
        summary=f"E-mail ({what}) may or may not have gone out: the sender stopped mid-send. "
                "Check with the participant, then resend it, or record that it was sent or not.")


def close_for_message(session: Session, rt: Runtime, key: str, resolution: str, note: str) -> None:
    """The message settled by itself (a late receipt): its follow-up is done."""
    follow_up = session.exec(select(FollowUp).where(FollowUp.source == f"message:{key}",
                                                    FollowUp.state == "open")).first()
    if follow_up is not None:
        _close(session, rt, follow_up, resolution, note, actor="service:notifications",
               role="system")


def list_follow_ups(session: Session, *, state: str | None) -> list[FollowUp]:
    query = select(FollowUp).order_by(col(FollowUp.id))
    if state:
        query = query.where(FollowUp.state == state)
    return list(session.exec(query))


def resolve(session: Session, rt: Runtime, *, follow_up_id: int, resolution: Resolution,
            note: str | None, actor: str, role: str) -> FollowUp:
    follow_up = session.get(FollowUp, follow_up_id)
    if follow_up is None:
        raise NotFound(f"no follow-up {follow_up_id}", field="follow_up_id")
    if follow_up.state != "open":
        raise Conflict(f"follow-up {follow_up_id} is {follow_up.state}", field="follow_up_id")
    if follow_up.kind == UNKNOWN_EMAIL:
        if resolution not in _MESSAGE_STATE:
            raise InvalidInput("an unknown e-mail is resolved by resend, sent or not_sent",
                               field="resolution")
        _settle_message(session, rt, follow_up, _MESSAGE_STATE[resolution])
    elif resolution != "done":
        raise InvalidInput("this follow-up is resolved by done", field="resolution")
    _close(session, rt, follow_up, resolution, note, actor=actor, role=role)
    return follow_up


def _settle_message(session: Session, rt: Runtime, follow_up: FollowUp,
                    target: DeliveryState) -> None:
    assert follow_up.message_key is not None
    now = rt.now()
    stamps: dict[str, Any]
    if target is DeliveryState.SCHEDULED:  # due again now, for any dispatcher to claim
        stamps = {"not_before": now, "claimed_by": None, "finished_at": None}
    elif target is DeliveryState.SENT:
        stamps = {"sent_at": now, "finished_at": None}
    else:
        stamps = {"finished_at": now}
    if not repository.set_state_if(session, follow_up.message_key, DeliveryState.UNKNOWN, target,
                                   updated_at=now, **stamps):
        raise Conflict("the e-mail is no longer of unknown outcome", field="follow_up_id")
    record_change(session, action=f"message.{target.value}", entity_type="message",
                  entity_id=follow_up.message_key, record=follow_up.record,
                  reason=f"follow-up {follow_up.id}",
                  before={"state": DeliveryState.UNKNOWN.value}, after={"state": target.value})
    if target is not DeliveryState.SENT:  # counted as sent while unknown: not any more
        msg = repository.message(session, follow_up.message_key)
        count_change(session, msg, sent=-1, answered=-int(
            msg is not None and answered_in_time(msg.answered_at, msg.expires_at)))
    if target is DeliveryState.SCHEDULED:
        wake_after_commit(session, rt)


def _close(session: Session, rt: Runtime, follow_up: FollowUp, resolution: str,
           note: str | None, *, actor: str, role: str) -> None:
    follow_up.state, follow_up.resolution, follow_up.note = "done", resolution, note
    follow_up.resolved_by, follow_up.resolved_at = actor, rt.now()
    session.add(follow_up)
    record_change(session, action="follow_up.resolved", entity_type="follow_up",
                  entity_id=str(follow_up.id), record=follow_up.record, actor=actor, role=role,
                  before={"state": "open"}, after={"state": "done", "resolution": resolution})
