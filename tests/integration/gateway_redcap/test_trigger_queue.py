"""The trigger queue stays small and fresh: one pending trigger per form (the database
refuses a second), Data Entry Triggers ahead of sweep findings, the gateway's own
write-back never re-read as a form save, and a backlog left by a REDCap outage drains
seconds after REDCap answers again — with nothing lost and nothing published twice."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from gateway.keys_cli import MIGRATIONS
from gateway.redcap import repository, service
from gateway.redcap.client import RedcapClient
from gateway.redcap.models import RedcapTrigger, RedcapWrite, form_key
from gateway.redcap.settings import RedcapSettings
from gateway.redcap.setup import form_keys
from gateway.redcap.trigger import Trigger
from services.core import audit
from services.core.db import make_engine, unit_of_work
from services.core.digests import DigestKey
from services.core.migrations import alembic_config, run_migrations
from services.core.protocol import load_protocol
from sim.redcap.testing import PERPAIN_REDCAP, running_emulator
from tests.support.harness import eventually

from .conftest import PROJECT_ID, Stack, baseline_values
from .test_write_back import _allocated, _publish, _writes

EVENT = "t0_baseline_arm_1"
PROTOCOL = load_protocol("protocols/perpain-pilot.yaml")
FORM = Trigger(PROJECT_ID, "3001", "consent", "t0_baseline", None)


def _row(trigger: Trigger, source: str, at: datetime, status: str = "pending") -> RedcapTrigger:
    return RedcapTrigger(
        id=f"{source}-{trigger.record}-{trigger.instrument}-{at.timestamp()}", source=source,
        form_key=form_key(trigger.project_id, trigger.record, trigger.event, trigger.instrument,
                          trigger.repeat_instance),
        project_id=trigger.project_id, record=trigger.record, event=trigger.event,
        instrument=trigger.instrument, repeat_instance=trigger.repeat_instance, body="{}",
        received_at=at, status=status, next_attempt_at=at)


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    run_migrations(MIGRATIONS, database_url)
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def test_the_database_refuses_a_second_pending_trigger_for_a_form(engine) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with unit_of_work(engine) as session:  # done triggers of the form do not count
        session.add(_row(FORM, "det", now - timedelta(minutes=5), status="published"))
        session.add(_row(FORM, "det", now - timedelta(minutes=1)))
    with pytest.raises(IntegrityError), unit_of_work(engine) as session:
        session.add(_row(FORM, "sweep", now))


def test_a_det_and_a_sweep_finding_for_one_form_merge(engine) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with unit_of_work(engine) as session:
        first, stored = service.enqueue_trigger(session, trigger=FORM, body={"sweep": "1"},
                                                source="sweep", now=now)
        assert stored
    for source in ("det", "sweep", "det"):
        with unit_of_work(engine) as session:
            row, stored = service.enqueue_trigger(session, trigger=FORM, body={}, source=source,
                                                  now=now)
            assert not stored and row.id == first.id
    with Session(engine) as session:
        [pending] = session.exec(select(RedcapTrigger).where(RedcapTrigger.status == "pending"))
        assert (pending.revision, pending.source) == (3, "det")  # a DET lifted its priority
        assert audit.verify(session).ok


def test_concurrent_triggers_for_one_form_merge(engine) -> None:  # type: ignore[no-untyped-def]
    """Eight senders at once (PostgreSQL runs them truly in parallel): one row stays."""
    def send(_: int) -> tuple[str, bool]:
        with unit_of_work(engine) as session:
            row, stored = service.enqueue_trigger(session, trigger=FORM, body={}, source="det",
                                                  now=datetime.now(UTC))
            return row.id, stored

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(send, range(8)))
    assert len({row_id for row_id, _ in answers}) == 1
    assert [stored for _, stored in answers].count(True) == 1
    with Session(engine) as session:
        [pending] = session.exec(select(RedcapTrigger))
        assert pending.revision == 7


def test_a_save_merged_during_a_fetch_is_fetched_again(engine) -> None:  # type: ignore[no-untyped-def]
    """The worker read the trigger and is fetching; a new save merges meanwhile: the
    fetched data may predate that save, so the trigger stays pending, due now."""
    now = datetime.now(UTC)
    with unit_of_work(engine) as session:
        service.enqueue_trigger(session, trigger=FORM, body={}, source="det", now=now)
    with Session(engine) as session:
        [in_flight] = repository.due_triggers(session, now)
    with unit_of_work(engine) as session:
        service.enqueue_trigger(session, trigger=FORM, body={}, source="det", now=now)
    keys = service.FormKeys({}, DigestKey(os.urandom(32), source="test"))
    with unit_of_work(engine) as session:  # the form is gone in REDCap: nothing to publish
        outcome = service.publish_form(session, t=in_flight, row=None, fields=[], now=now,
                                       protocol=PROTOCOL, keys=keys)
    assert outcome == "refetch"
    with Session(engine) as session:
        [row] = session.exec(select(RedcapTrigger))
        assert (row.status, row.attempts, row.revision) == ("pending", 1, 1)
    with unit_of_work(engine) as session:  # the next fetch, with nothing merged meanwhile
        again = session.get(RedcapTrigger, row.id)
        assert again is not None
        assert service.publish_form(session, t=again, row=None, fields=[], now=now,
                                    protocol=PROTOCOL, keys=keys) == "unchanged"


def test_replays_of_a_fetched_forms_det_cost_one_fetch_per_window(engine) -> None:  # type: ignore[no-untyped-def]
    """Issue 12 item 14: after a form was fetched, replays of its DET are not fetched at
    once: they wait out the window in one pending trigger (one REDCap export however many
    replays), and that trigger is still fetched, so a real re-save is never lost."""
    window = timedelta(seconds=5)
    fetched = datetime.now(UTC)
    with unit_of_work(engine) as session:
        session.add(_row(FORM, "det", fetched - timedelta(seconds=1), status="unchanged"))
        session.flush()
        done = session.exec(select(RedcapTrigger)).one()
        done.done_at = fetched
    now = fetched + timedelta(seconds=1)
    stored = []
    for n in range(20):  # a flood of identical DETs
        with unit_of_work(engine) as session:
            stored.append(service.enqueue_trigger(session, trigger=FORM, body={}, source="det",
                                                  now=now + timedelta(milliseconds=n),
                                                  coalesce=window)[1])
    assert stored.count(True) == 1
    with Session(engine) as session:
        assert repository.due_triggers(session, now + timedelta(seconds=1)) == []
        [due] = repository.due_triggers(session, fetched + window)
        assert due.status == "pending" and due.revision == 19
    other = Trigger(PROJECT_ID, "3002", "consent", "t0_baseline", None)
    with unit_of_work(engine) as session:  # a form never fetched is due at once
        service.enqueue_trigger(session, trigger=other, body={}, source="det", now=now,
                                coalesce=window)
    with Session(engine) as session:
        assert [t.record for t in repository.due_triggers(session, now)] == ["3002"]


def test_a_re_save_after_a_fetch_that_published_is_due_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    """Issue 18: the coalescing window must not delay a real save. A form whose last fetch
    published a change (site staff saving, then correcting it a second later) is fetched
    again at once; only after a fetch that found nothing new do its DETs wait out the window."""
    window = timedelta(seconds=5)
    fetched = datetime.now(UTC)
    with unit_of_work(engine) as session:
        session.add(_row(FORM, "det", fetched - timedelta(seconds=1), status="published"))
        session.flush()
        session.exec(select(RedcapTrigger)).one().done_at = fetched
    now = fetched + timedelta(seconds=1)
    with unit_of_work(engine) as session:
        service.enqueue_trigger(session, trigger=FORM, body={}, source="det", now=now,
                                coalesce=window)
    with Session(engine) as session:
        [due] = repository.due_triggers(session, now)
        assert due.record == FORM.record and due.status == "pending"


def test_migration_collapses_pending_duplicates(database_url: str) -> None:
    """Databases from before gateway_0004 may hold several pending triggers for a form:
    the oldest stays pending, the others are marked merged, and the index is built."""
    config = alembic_config(MIGRATIONS, database_url)
    command.upgrade(config, "gateway_0003")
    eng = make_engine(database_url)
    try:
        insert = text("INSERT INTO redcap_trigger (id, source, project_id, record, event, "
                      "instrument, body, received_at, status, attempts, next_attempt_at) VALUES "
                      "(:id, 'det', 101, '3009', 't0_baseline', 'consent', '{}', :at, :status, "
                      "0, :at)")
        base = datetime(2026, 11, 1, tzinfo=UTC)
        with eng.begin() as conn:
            for i, status in enumerate(["published", "pending", "pending", "pending"]):
                conn.execute(insert, {"id": f"t{i}", "at": base + timedelta(seconds=i),
                                      "status": status})
        command.upgrade(config, "head")
        with eng.connect() as conn:
            rows = dict(conn.execute(text("SELECT id, status FROM redcap_trigger")).all())
            keys = set(conn.execute(text("SELECT form_key FROM redcap_trigger")).scalars())
        assert rows == {"t0": "published", "t1": "pending", "t2": "merged", "t3": "merged"}
        assert keys == {"101|3009|t0_baseline|consent|0"}
    finally:
        eng.dispose()


def test_dets_come_before_sweep_work(engine) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    with unit_of_work(engine) as session:
        for i in range(5):  # an older backlog of sweep findings
            session.add(_row(Trigger(PROJECT_ID, f"40{i}", "consent", "t0_baseline", None),
                             "sweep", now - timedelta(minutes=10 - i)))
        session.add(_row(Trigger(PROJECT_ID, "499", "consent", "t0_baseline", None), "det", now))
    with Session(engine) as session:
        order = [t.source for t in repository.due_triggers(session, now)]
    assert order == ["det"] + ["sweep"] * 5


def _pending(stack: Stack) -> list[RedcapTrigger]:
    with Session(stack.engine) as session:
        return list(session.exec(select(RedcapTrigger).where(RedcapTrigger.status == "pending")))


async def test_re_saves_during_an_outage_keep_one_pending_trigger(stack: Stack) -> None:
    stack.redcap.set_fault("error", status=503)
    stack.redcap.save_form("consent", values={"cons_given": "1"}, record="3002", event=EVENT)
    await eventually(lambda: [t.attempts > 0 for t in _pending(stack)] == [True])  # fetch failed
    for _ in range(3):  # the same form saved again while REDCap's API is down
        stack.redcap.save_form("consent", values={"cons_given": "1"}, record="3002", event=EVENT)
    [pending] = _pending(stack)
    assert pending.revision == 3
    stack.redcap.clear_fault()
    await eventually(lambda: not _pending(stack), timeout=30)


async def test_the_sweep_does_not_reread_the_gateways_own_write_back(stack: Stack) -> None:
    await _publish(stack, _allocated("3003"))
    await eventually(lambda: [w.status for w in _writes(stack)] == ["written"])
    settings = RedcapSettings()
    client = RedcapClient(settings.api_url or "", settings.api_token() or "")
    kernel = stack.gateway.state.kernel
    found = service.sweep(kernel.engine, client, kernel.protocol, settings,
                          datetime.now(UTC), form_keys(kernel))
    assert found == 0
    with Session(stack.engine) as session:
        rows = session.exec(select(RedcapTrigger).where(RedcapTrigger.record == "3003"))
        assert [t.instrument for t in rows] == []


def _published(stack: Stack) -> list[tuple[str, str]]:
    with Session(stack.engine) as session:
        entries = session.exec(select(audit.AuditEntry)
                               .where(audit.AuditEntry.action == "redcap.form_published"))
        return [(e.record or "", json.loads(e.after or "{}")["instrument"]) for e in entries]


def _quiet(stack: Stack) -> bool:
    with Session(stack.engine) as session:
        return (repository.pending_count(session, RedcapTrigger) == 0
                and repository.pending_count(session, RedcapWrite) == 0)


# Retry delays of a minute or more, as a long outage leaves them: without the recovery
# probe, the backlog would sleep them out after REDCap is back.
@pytest.mark.parametrize("stack", [{"retry_base": 120, "retry_cap": 300, "probe": 0.5}],
                         indirect=True)
async def test_a_backlog_drains_seconds_after_an_outage(stack: Stack) -> None:
    records = [f"35{i:02d}" for i in range(6)]
    stack.redcap.set_fault("error", status=503)
    for record in records:  # a clinic's saves while REDCap's API fails: DETs still arrive
        for form, values in baseline_values().items():
            stack.redcap.save_form(form, values=values, record=record, event=EVENT)
    expected = {(r, f) for r in records for f in baseline_values()}
    await eventually(lambda: len(_pending(stack)) == len(expected)
                     and all(t.attempts > 0 for t in _pending(stack)), timeout=60)
    stack.redcap.clear_fault()
    faults_stopped = time.monotonic()
    await eventually(lambda: _quiet(stack), timeout=45)
    quiescence = time.monotonic() - faults_stopped
    print(f"\nbacklog of {len(expected)} forms: quiet {quiescence:.1f} s after the faults stopped")
    published = _published(stack)
    assert sorted(published) == sorted(expected)  # nothing lost, nothing doubled


@pytest.mark.postgres
def test_a_sweep_and_a_locked_trigger_do_not_deadlock_on_the_audit_chain(
        postgres_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The worker (or a DET merging) holds a form's pending trigger, then appends to the
    audit chain; a sweep reaching that form meanwhile must wait for the trigger without
    holding the chain, or PostgreSQL finds a deadlock and kills one of them (DETs got 500s
    and monitors' reads 503s under load)."""
    run_migrations(MIGRATIONS, postgres_url)
    engine = make_engine(postgres_url)
    with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP,
                          project_id=PROJECT_ID) as redcap:
        monkeypatch.setenv("TAILOR_REDCAP_API_URL", redcap.api_url)
        monkeypatch.setenv("TAILOR_REDCAP_TOKEN", redcap.token)
        for record in ("4001", "4002"):  # saved while DETs were lost: the sweep finds them
            redcap.save_form("consent", values={"cons_given": "1"}, record=record, event=EVENT,
                             fire_det=False)
        busy = Trigger(PROJECT_ID, "4002", "consent", "t0_baseline", None)
        with unit_of_work(engine) as session:
            service.enqueue_trigger(session, trigger=busy, body={}, source="det", now=datetime.now(UTC))
        settings = RedcapSettings()
        client = RedcapClient(settings.api_url or "", settings.api_token() or "")
        keys = service.FormKeys({}, DigestKey(os.urandom(32), source="test"))
        # The pool outlives the worker's session: a failure here releases the lock first.
        with ThreadPoolExecutor(max_workers=1) as pool, Session(engine) as worker:
            key = form_key(PROJECT_ID, "4002", "t0_baseline", "consent", None)
            assert repository.pending_for_form(worker, key) is not None  # locked, as the worker does
            swept = pool.submit(service.sweep, engine, client, PROTOCOL, settings,
                                datetime.now(UTC), keys)
            _wait_until_blocked_on_a_row(engine, swept)
            audit.append(worker, actor="test", role="system", action="redcap.form_unchanged",
                         entity_type="redcap_trigger", entity_id=key)
            worker.commit()
            assert swept.result(timeout=60) >= 2  # both records' consent forms
    engine.dispose()


def _wait_until_blocked_on_a_row(engine, swept) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while time.monotonic() < deadline and not swept.done():
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar()
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the sweep never reached the locked trigger")
