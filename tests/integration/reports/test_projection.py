"""The projection on a real (SQLite) database: reads only what it needs, tolerates added
and missing fields, ignores stale redeliveries, never stops on a malformed date, and refuses
(poison) only an event it cannot place at all."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core.db import make_engine, unit_of_work
from services.core.errors import PermanentError
from services.core.events import Allocated, Envelope, FormSavedForReports
from services.core.events.form_fields import reports_fields
from services.core.migrations import run_migrations
from services.core.protocol import load_protocol
from services.reports.app import SPEC
from services.reports.models import ParticipantRow
from services.reports.projection import FORM_SAVED, apply
from tests.support.sealed import keyring, recipient

P = load_protocol("protocols/perpain-pilot.yaml")
AT = datetime(2026, 4, 1, 9, tzinfo=UTC)
BASELINE = P.redcap.unique_event_name(P.redcap.baseline_event)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'reports.db'}"
    run_migrations(SPEC.migrations, url)
    e = make_engine(url)
    yield e
    e.dispose()


def saved(data: dict, at: datetime = AT) -> Envelope:
    """A save sealed to reports as the gateway seals it, with exactly the keys given (plus
    the ones every save has), so added and missing keys reach the projection as sent."""
    values = {"project_id": P.redcap.project_id, "event": None, "complete_status": 0,
              "trigger": "det"} | data
    record = str(values.get("record", ""))
    outer = FormSavedForReports(record=record, sealed=recipient("reports").seal_json(
        values, subject=FormSavedForReports.subject, record=record))
    return Envelope(subject=FORM_SAVED, producer="gateway", occurred_at=at, record=record or None,
                    data=outer.model_dump(mode="json"))


def run(engine: Engine, env: Envelope) -> None:
    with unit_of_work(engine) as session:
        apply(session, env, P, keyring("reports"))


def row(engine: Engine, record: str) -> ParticipantRow:
    with Session(engine) as session:
        found = session.get(ParticipantRow, record)
        assert found is not None
        return found


def test_minimal_and_extended_payloads_are_both_read(engine: Engine) -> None:
    run(engine, saved({"record": "A", "instrument": "screening", "event": BASELINE,
                       "complete_status": 2, "fields": {"scr_eligible": "1"}}))
    run(engine, saved({"record": "A", "instrument": "consent", "event": BASELINE, "complete_status": 2,
                       "fields": {"cons_given": "1", "cons_date": "2026-03-30"},
                       "a_field_added_later": {"nested": True}, "project_id": 101, "trigger": "det"}))
    a = row(engine, "A")
    assert a.eligible is True and a.consent is True and a.consented_on == date(2026, 3, 30)
    assert a.screened_on == AT.date()  # no screening date on the form: the save's day


def test_a_stale_redelivery_does_not_overwrite_a_newer_save(engine: Engine) -> None:
    later = AT + timedelta(hours=1)
    run(engine, saved({"record": "B", "instrument": "screening", "event": BASELINE,
                       "complete_status": 2, "fields": {"scr_eligible": "0"}}, later))
    run(engine, saved({"record": "B", "instrument": "screening", "event": BASELINE,
                       "complete_status": 2, "fields": {"scr_eligible": "1"}}, AT))
    assert row(engine, "B").eligible is False


def test_a_malformed_date_falls_back_to_the_save_day(engine: Engine) -> None:
    run(engine, saved({"record": "C", "instrument": P.redcap.withdrawal_form, "event": BASELINE,
                       "complete_status": 2,
                       "fields": {"wd_withdrawn": "1", "wd_date": "31.04.2026", "wd_reason": "9"}}))
    c = row(engine, "C")
    assert c.withdrawn_on == AT.date() and c.withdrawal_reason == "unspecified"
    run(engine, saved({"record": "C", "instrument": P.redcap.withdrawal_form, "event": BASELINE,
                       "complete_status": 2, "fields": {"wd_withdrawn": "0"}}, AT + timedelta(days=1)))
    assert row(engine, "C").withdrawn_on is None  # corrected: not withdrawn after all


def test_allocation_keeps_module_and_time_only(engine: Engine) -> None:
    event = Allocated(record="D", allocation_number="PP-0001", module="EDDT", allocated_at=AT)
    data = {**event.model_dump(mode="json"), "arm": "personalized", "cluster": "ID"}
    run(engine, Envelope(subject=Allocated.subject, producer="randomization", data=data))
    d = row(engine, "D")
    assert (d.module, d.randomized_at) == ("EDDT", AT)
    assert "personalized" not in repr(d.model_dump()) and "ID" not in d.model_dump().values()


def test_an_event_without_a_record_is_poison(engine: Engine) -> None:
    with pytest.raises(PermanentError):
        run(engine, saved({"instrument": "screening", "fields": {}}))


def test_only_the_declared_fields_matter(engine: Engine, tmp_path: Path) -> None:
    """The same saves, once with every field and once cut to `reports_fields`, give the
    same participant row: the gateway sends reports only what it declares."""
    needed = reports_fields(P)
    assert {"cons_email", "cons_mobile", "cons_address", "ae_narrative"}.isdisjoint(needed)
    full = {"scr_eligible": "1", "scr_date": "2026-03-01", "cons_given": "1",
            "cons_date": "2026-03-02", "cons_email": "x@example.org", "dem_age": "40",
            "wd_withdrawn": "1", "wd_date": "2026-03-20", "wd_reason": "2", "wd_preventable": "1"}
    other_url = f"sqlite:///{tmp_path / 'cut.db'}"
    run_migrations(SPEC.migrations, other_url)
    cut_engine = make_engine(other_url)
    try:
        for target, fields in ((engine, full), (cut_engine, {k: v for k, v in full.items()
                                                             if k in needed})):
            for i, form in enumerate(("screening", "consent", P.redcap.withdrawal_form)):
                run(target, saved({"record": "E", "instrument": form, "event": BASELINE,
                                   "complete_status": 2, "fields": fields},
                                  AT + timedelta(minutes=i)))
        assert row(engine, "E").model_dump() == row(cut_engine, "E").model_dump()
        assert row(engine, "E").withdrawal_reason == "lost_to_follow_up"
    finally:
        cut_engine.dispose()


def test_a_follow_up_save_with_empty_baseline_columns_erases_nothing(engine: Engine) -> None:
    """REDCap exports every column of the record's row for the saved event, empty outside
    it: a week-4 save carries `scr_eligible: ""` and `cons_given: ""` (seen in the demo)."""
    run(engine, saved({"record": "F", "instrument": "screening", "event": BASELINE,
                       "complete_status": 2, "fields": {"scr_eligible": "1", "cons_given": "1",
                                                        "cons_date": "2026-03-30"}}))
    week4 = P.redcap.unique_event_name("week_4")
    run(engine, saved({"record": "F", "instrument": "pgic", "event": week4, "complete_status": 2,
                       "fields": {"scr_eligible": "", "cons_given": "", "cons_date": "",
                                  "pgic_rating": "3", "wd_withdrawn": ""}}, AT + timedelta(days=30)))
    f = row(engine, "F")
    assert (f.eligible, f.consent, f.consented_on) == (True, True, date(2026, 3, 30))
    assert f.withdrawn_on is None


def test_a_withdrawal_stands_until_its_own_form_is_corrected(engine: Engine) -> None:
    week4, week8 = (P.redcap.unique_event_name(e) for e in ("week_4", "week_8"))
    wd = P.redcap.withdrawal_form
    yes = {"wd_withdrawn": "1", "wd_date": "2026-04-20", "wd_reason": "2"}
    run(engine, saved({"record": "G", "instrument": wd, "event": week4, "complete_status": 2,
                       "fields": yes}))
    run(engine, saved({"record": "G", "instrument": wd, "event": week8, "complete_status": 0,
                       "fields": {"wd_withdrawn": ""}}, AT + timedelta(days=1)))
    assert row(engine, "G").withdrawn_on == date(2026, 4, 20)  # another event's blank form
    run(engine, saved({"record": "G", "instrument": wd, "event": week4, "complete_status": 2,
                       "fields": {"wd_withdrawn": "0"}}, AT + timedelta(days=2)))
    assert row(engine, "G").withdrawn_on is None  # the week-4 form itself was corrected


def test_received_intervention_stands_until_its_own_form_is_corrected(engine: Engine) -> None:
    """"Started the allocated module" on the withdrawal form: a yes counts from its first
    save; another event's blank form leaves it; its own form's "no" clears it."""
    wd, field = P.redcap.withdrawal_form, "wd_module_started"
    assert P.reports is not None and P.reports.received_field == field
    assert field in reports_fields(P)
    week4 = P.redcap.unique_event_name(P.timepoints[1].redcap_event)
    run(engine, saved({"record": "R", "instrument": wd, "event": week4, "complete_status": 2,
                       "fields": {"wd_withdrawn": "0", field: "1"}}))
    run(engine, saved({"record": "R", "instrument": wd, "event": week4, "complete_status": 2,
                       "fields": {"wd_withdrawn": "0", field: "1"}}, AT + timedelta(days=3)))
    assert row(engine, "R").received_on == AT.date()  # the first "yes" stands
    run(engine, saved({"record": "R", "instrument": wd, "event": BASELINE,
                       "fields": {"wd_withdrawn": "", field: ""}}, AT + timedelta(days=4)))
    assert row(engine, "R").received_on == AT.date()
    run(engine, saved({"record": "R", "instrument": wd, "event": week4, "complete_status": 2,
                       "fields": {"wd_withdrawn": "0", field: "0"}}, AT + timedelta(days=5)))
    assert row(engine, "R").received_on is None
