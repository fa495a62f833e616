"""Every query of the reports database."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, delete, select

from services.core.inbox import InboxEntry
from services.core.protocol import TrialProtocol

from .domain import (
    AdverseEventFact,
    DiaryWeek,
    Facts,
    NeqAnswer,
    ParticipantFacts,
    TimepointDone,
)
from .models import (
    READ_MODEL,
    AdverseEventRow,
    DiaryWeekRow,
    FormRow,
    NeqRow,
    ParticipantRow,
    TimepointRow,
)

COMPLETE = 2  # REDCap's <form>_complete: 0 incomplete, 1 unverified, 2 complete


def participant_for_update(session: Session, record: str, seen: date) -> ParticipantRow:
    row = session.get(ParticipantRow, record)
    if row is None:
        row = ParticipantRow(record=record, first_seen=seen)
    elif seen < row.first_seen:
        row.first_seen = seen
    return row


def baseline_complete_on(session: Session, protocol: TrialProtocol) -> dict[str, date]:
    """record → the day its last baseline form became complete (only if all are)."""
    r = protocol.redcap
    rows = session.exec(select(FormRow).where(FormRow.event == r.baseline_event,
                                              col(FormRow.instrument).in_(r.baseline_forms)))
    done: dict[str, dict[str, FormRow]] = {}
    for row in rows:
        done.setdefault(row.record, {})[row.instrument] = row
    needed = set(r.baseline_forms)
    return {record: max(f.saved_at for f in forms.values()).date()
            for record, forms in done.items()
            if set(forms) == needed and all(f.complete_status == COMPLETE for f in forms.values())}


def load_facts(session: Session, protocol: TrialProtocol) -> Facts:
    baseline = baseline_complete_on(session, protocol)
    participants = [
        ParticipantFacts(
            record=p.record, first_seen=p.first_seen, screened_on=p.screened_on, site=p.site,
            eligible=p.eligible, consent=p.consent, consented_on=p.consented_on,
            baseline_complete_on=baseline.get(p.record), randomized_at=p.randomized_at,
            module=p.module, withdrawn_on=p.withdrawn_on, withdrawal_reason=p.withdrawal_reason,
            preventable=p.preventable, received_on=p.received_on)
        for p in session.exec(select(ParticipantRow).order_by(ParticipantRow.record))]
    return Facts(
        participants=participants,
        timepoints=[TimepointDone(t.record, t.timepoint, t.completed_at, t.reminders_sent)
                    for t in session.exec(select(TimepointRow))],
        neq=[NeqAnswer(n.record, n.timepoint, n.effects, n.attributed_to_treatment)
             for n in session.exec(select(NeqRow))],
        adverse_events=[AdverseEventFact(a.record, a.key, a.serious, a.reported_on)
                        for a in session.exec(select(AdverseEventRow))],
        diary=[DiaryWeek(d.record, d.week, d.week_start, d.prompts_sent, d.answered_in_time)
               for d in session.exec(select(DiaryWeekRow).order_by(DiaryWeekRow.record,
                                                                    DiaryWeekRow.week))])


def clear_read_model(session: Session, consumers: list[str]) -> None:
    """Empty every read-model table and forget which events the consumers applied."""
    for table in READ_MODEL:
        session.exec(delete(table))  # type: ignore[call-overload]
    session.exec(delete(InboxEntry).where(col(InboxEntry.consumer).in_(consumers)))  # type: ignore[call-overload]
