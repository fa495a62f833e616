"""Contact details from the consent form, sealed at rest; the participant snapshot the
send-time check needs. Values are never logged or audited: only which fields changed."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session

from services.core.protocol import TrialProtocol

from . import repository
from .addresses import single_address
from .crypto import ContactDetails
from .domain import ParticipantSnapshot, participant_zone
from .models import ContactRow, Message
from .runtime import Runtime

CHANNELS = ("email", "sms", "phone", "letter")


def load(session: Session, rt: Runtime, record: str) -> ContactDetails | None:
    row = repository.contact(session, record)
    return None if row is None else rt.cipher.open(record, row.sealed)


def store(session: Session, rt: Runtime, record: str, details: ContactDetails,
          now: datetime) -> None:
    row = repository.contact(session, record) or ContactRow(
        record=record, sealed="", key_id=rt.cipher.key_id, updated_at=now)
    row.sealed, row.key_id, row.updated_at = rt.cipher.seal(record, details), rt.cipher.key_id, now
    session.add(row)


def zone_of(rt: Runtime, details: ContactDetails | None) -> ZoneInfo:
    return participant_zone(details.timezone if details else None,
                            rt.protocol.reminders.default_timezone)


def _valid_zone(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def from_fields(fields: dict[str, str], protocol: TrialProtocol,
                previous: ContactDetails | None) -> ContactDetails | None:
    """The consent form's contact fields as details; None when the save carries none."""
    f = protocol.redcap.fields
    names = [n for n in (f.email, f.mobile, f.postal_address, f.language, f.timezone) if n]
    optout = f.contact_opt_out
    has_optout = optout is not None and any(k.startswith(f"{optout}___") for k in fields)
    if not has_optout and not any(n in fields for n in names):
        return None

    def value(name: str | None) -> str | None:
        raw = (fields.get(name) or "").strip() if name else ""
        return raw or None

    mobile = value(f.mobile)
    language = value(f.language)
    zone = value(f.timezone)
    address = value(f.postal_address)
    return ContactDetails(
        email=single_address(value(f.email)),
        mobile=re.sub(r"[\s\-/()]", "", mobile) if mobile else None,
        address=tuple(line.strip() for line in (address or "").splitlines() if line.strip()),
        language=language if language in protocol.reminders.languages else None,
        timezone=_valid_zone(zone) if zone else None,
        opted_out=frozenset(ch for ch in CHANNELS if optout
                            and fields.get(f"{optout}___{ch}") == "1"),
        staff_opted_out=previous.staff_opted_out if previous else frozenset(),
    )


def refused_fields(fields: dict[str, str], protocol: TrialProtocol,
                   details: ContactDetails) -> list[str]:
    """Contact fields that held a value which was not accepted (names only, never values)."""
    name = protocol.redcap.fields.email
    return ["email"] if name and (fields.get(name) or "").strip() and details.email is None else []


def changed_fields(before: ContactDetails | None, after: ContactDetails) -> list[str]:
    names = ("email", "mobile", "address", "language", "timezone", "opted_out",
             "staff_opted_out")
    if before is None:
        return [n for n in names if getattr(after, n)]
    return [n for n in names if getattr(before, n) != getattr(after, n)]


def snapshot(session: Session, rt: Runtime, record: str,
             details: ContactDetails | None, *, exclude: Message | None = None
             ) -> ParticipantSnapshot:
    """What is known about a participant at send time (`exclude`: the message being sent)."""
    participant = repository.participant(session, record)
    done_by_event = repository.completed_forms(session, record)
    completed = {tp.key: done_by_event.get(tp.redcap_event, frozenset())
                 for tp in rt.protocol.timepoints}
    sent = repository.reminders_left_us(session, record)
    if exclude is not None and exclude.timepoint and exclude.state in repository.LEFT_US:
        sent[exclude.timepoint] -= 1
    return ParticipantSnapshot(
        withdrawn=participant is not None and participant.withdrawn_at is not None,
        opted_out=details.opt_outs() if details else frozenset(),
        reachable=details.reachable() if details else frozenset(),
        completed_forms=completed,
        sent=sent,
    )
