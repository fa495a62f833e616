"""Applying one bus event to the read model. The live consumer and the rebuild both call
`apply`, so a rebuild from the stream's start gives the same rows.

REDCap saves arrive sealed to this service's bus key, cut to the fields it declared
(`services/core/events/form_fields.py`, `reports_fields`); only its keyring opens them.
Reads tolerantly: only the fields it needs, unknown fields ignored (producers may add
fields). A malformed value (a date that
is not a date) falls back to the event's time instead of stopping the consumer: a report
must never block on one bad form. Never stores an arm or a cluster — none is read.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlmodel import Session

from services.core.errors import InvalidInput, PermanentError
from services.core.events import DiaryPromptsCounted, Envelope, FormSavedForReports
from services.core.protocol import TrialProtocol
from services.core.sealed_events import open_form_saved
from services.core.sealing import Keyring

from . import repository
from .models import AdverseEventRow, DiaryWeekRow, FormRow, NeqRow, ParticipantRow, TimepointRow

FORM_SAVED = FormSavedForReports.subject
ALLOCATED = "trial.v1.randomization.allocated"
TIMEPOINT_COMPLETED = "trial.v1.notifications.timepoint_completed"
DIARY_COUNTED = DiaryPromptsCounted.subject
SUBJECTS = (FORM_SAVED, ALLOCATED, TIMEPOINT_COMPLETED, DIARY_COUNTED)


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SavedForm(_Tolerant):
    record: str
    event: str | None = None
    instrument: str
    repeat_instance: int | None = None
    complete_status: int = 0
    fields: dict[str, str] = {}


class Allocation(_Tolerant):
    record: str
    module: str
    allocated_at: datetime


class Completion(_Tolerant):
    record: str
    timepoint: str
    completed_at: datetime
    reminders_sent: int = 0


M = TypeVar("M", bound=_Tolerant)


def _parse(model: type[M], env: Envelope) -> M:
    try:
        return model.model_validate(env.data)
    except ValidationError as exc:
        raise PermanentError(f"{env.subject}: {exc.errors()[:2]}") from None


def _day(text: str | None, fallback: date) -> date:
    try:
        return date.fromisoformat((text or "")[:10])
    except ValueError:
        return fallback


def _yes_no(protocol: TrialProtocol, value: str | None) -> bool | None:
    return protocol.safety.redcap_form.codes.yes_no.get(value or "")


def _opened(env: Envelope, keyring: Keyring) -> SavedForm:
    try:
        saved = open_form_saved(env, keyring)
    except InvalidInput as exc:  # foreign or malformed (a wrong seal is poison already)
        raise PermanentError(f"{env.subject}: {exc}") from None
    return SavedForm.model_validate(saved.model_dump())


def apply(session: Session, env: Envelope, protocol: TrialProtocol, keyring: Keyring) -> None:
    if env.subject == FORM_SAVED:
        _form_saved(session, _opened(env, keyring), env.occurred_at, protocol)
    elif env.subject == ALLOCATED:
        a = _parse(Allocation, env)
        row = repository.participant_for_update(session, a.record, a.allocated_at.date())
        row.randomized_at, row.module = a.allocated_at, a.module
        session.add(row)
    elif env.subject == TIMEPOINT_COMPLETED:
        c = _parse(Completion, env)
        repository.participant_for_update(session, c.record, c.completed_at.date())
        session.merge(TimepointRow(record=c.record, timepoint=c.timepoint,
                                   completed_at=c.completed_at, reminders_sent=c.reminders_sent))
    elif env.subject == DIARY_COUNTED:
        _diary_counted(session, env.payload(DiaryPromptsCounted))


def _form_saved(session: Session, saved: SavedForm, at: datetime, protocol: TrialProtocol) -> None:
    r = protocol.redcap
    event = r.event_key(saved.event) or ""
    key = (saved.record, event, saved.instrument, saved.repeat_instance or 1)
    known = session.get(FormRow, key)
    if known is not None and known.saved_at > at:
        return  # a late redelivery of an older save
    session.merge(FormRow(record=key[0], event=key[1], instrument=key[2], instance=key[3],
                          complete_status=saved.complete_status, saved_at=at))
    row = repository.participant_for_update(session, saved.record, at.date())
    f, fields = r.fields, saved.fields
    rules = protocol.reports
    # A save carries every column of the record's row for its event, empty outside it:
    # screening and consent are read from baseline saves only, never erased by follow-ups.
    baseline = event == r.baseline_event
    if rules and rules.recruitment.site_field and fields.get(rules.recruitment.site_field):
        row.site = fields[rules.recruitment.site_field]
    if baseline and f.eligible in fields:
        row.eligible = _yes_no(protocol, fields.get(f.eligible))
        date_field = rules.screening_date_field if rules else ""
        row.screened_on = _day(fields.get(date_field), at.date())
    if baseline and f.consent in fields:
        row.consent = _yes_no(protocol, fields.get(f.consent))
        row.consented_on = (_day(fields.get(f.consent_date or ""), at.date())
                            if row.consent else None)
    if saved.instrument == r.withdrawal_form and rules is not None:
        _withdrawal(row, fields, at, event, protocol)
        _received(row, fields, at, event, protocol)
    session.add(row)
    if saved.instrument == r.adverse_event_form:
        serious = _yes_no(protocol, fields.get(protocol.safety.redcap_form.fields.serious))
        session.merge(AdverseEventRow(record=saved.record, key=f"{event}#{key[3]}",
                                      serious=bool(serious), reported_on=at.date()))
    elif saved.instrument == protocol.safety.redcap_form.neq_instrument:
        _neq(session, saved, event, protocol)


def _withdrawal(row: ParticipantRow, fields: dict[str, str], at: datetime, event: str,
                protocol: TrialProtocol) -> None:
    """The withdrawal form exists in every event: the one that says "withdrawn" wins; a
    "no" clears it only when it is that same event's form being corrected."""
    assert protocol.reports is not None
    w = protocol.reports.withdrawal
    if _yes_no(protocol, fields.get(protocol.redcap.fields.withdrawn)):
        row.withdrawn_on = _day(fields.get(w.date), at.date())
        row.withdrawal_event = event
        code = fields.get(w.reason)
        row.withdrawal_reason = w.reasons.get(code or "", "unspecified")
        row.preventable = _yes_no(protocol, fields.get(w.preventable))
    elif row.withdrawal_event in (None, event):
        row.withdrawn_on = row.withdrawal_event = row.withdrawal_reason = row.preventable = None


def _received(row: ParticipantRow, fields: dict[str, str], at: datetime, event: str,
              protocol: TrialProtocol) -> None:
    """Started the allocated module: a "yes" on any event's withdrawal form counts from its
    first save; a "no" clears it only on that same event's form (a correction)."""
    assert protocol.reports is not None
    name = protocol.reports.received_field
    said = _yes_no(protocol, fields.get(name)) if name else None
    if said and row.received_on is None:
        row.received_on, row.received_event = at.date(), event
    elif said is False and row.received_event == event:
        row.received_on = row.received_event = None


def _neq(session: Session, saved: SavedForm, event: str, protocol: TrialProtocol) -> None:
    timepoint = next((t.key for t in protocol.timepoints if t.redcap_event == event), None)
    if timepoint is None:
        return
    form = protocol.safety.redcap_form
    treatment = {code for code, who in form.codes.attribution.items() if who == "treatment"}
    items = [f"{form.neq_prefix}{n}" for n in range(1, protocol.safety.neq_items + 1)]
    happened = [i for i in items if _yes_no(protocol, saved.fields.get(i))]
    attributed = sum(1 for i in happened if saved.fields.get(f"{i}_attr") in treatment)
    session.merge(NeqRow(record=saved.record, timepoint=timepoint, effects=len(happened),
                         attributed_to_treatment=attributed))


def _week_start(week: str) -> date:
    year, _, number = week.partition("-W")
    try:
        return date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        raise PermanentError(f"{DIARY_COUNTED}: week is not an ISO week (YYYY-Www)") from None


def _diary_counted(session: Session, counted: DiaryPromptsCounted) -> None:
    """Changes add up (each event is applied once: the inbox); the order does not matter."""
    start = _week_start(counted.week)
    row = session.get(DiaryWeekRow, (counted.record, counted.week)) or DiaryWeekRow(
        record=counted.record, week=counted.week, week_start=start, prompts_sent=0,
        answered_in_time=0)
    row.prompts_sent += counted.prompts_sent
    row.answered_in_time += counted.answered_in_time
    session.add(row)
