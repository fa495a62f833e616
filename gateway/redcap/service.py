"""Use cases of the REDCap integration. Functions that talk to REDCap do the I/O outside
any transaction, then record the outcome in one transaction (state + outbox + audit)."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core import audit, outbox
from services.core.db import unit_of_work
from services.core.events import Allocated, Envelope, FormSaved, RedcapWriteFailed
from services.core.protocol import TrialProtocol

from . import metrics, repository
from .client import RedcapClient, RedcapRefused, RedcapUnavailable
from .models import RedcapSnapshot, RedcapSweep, RedcapTrigger, RedcapWrite
from .settings import RedcapSettings
from .trigger import Trigger, known_instruments

log = structlog.get_logger(__name__)
ACTOR = "gateway:redcap"


def _retry_at(now: datetime, attempts: int, s: RedcapSettings) -> datetime:
    ceiling = min(s.retry_cap_seconds, s.retry_base_seconds * 2 ** max(0, attempts - 1))
    return now + timedelta(seconds=random.uniform(ceiling / 2, ceiling))


# ── triggers ──────────────────────────────────────────────────────────────
def store_trigger(session: Session, *, trigger: Trigger, body: dict[str, str], source: str,
                  now: datetime) -> RedcapTrigger:
    row = RedcapTrigger(
        id=uuid4().hex, source=source, project_id=trigger.project_id, record=trigger.record,
        event=trigger.event, instrument=trigger.instrument, repeat_instance=trigger.repeat_instance,
        body=json.dumps(body, sort_keys=True), received_at=now, next_attempt_at=now)
    session.add(row)
    audit.append(session, actor=ACTOR, role="redcap", action=f"redcap.{source}_received",
                 entity_type="redcap_trigger", entity_id=row.id, record=trigger.record,
                 after={"instrument": trigger.instrument, "event": trigger.event,
                        "repeat_instance": trigger.repeat_instance}, correlation_id=row.id)
    return row


def _form_row(rows: list[dict[str, str]], instrument: str, instance: int | None,
              repeating: bool) -> dict[str, str] | None:
    for row in rows:
        repeat_form = row.get("redcap_repeat_instrument") or ""
        same_instance = str(row.get("redcap_repeat_instance")) == str(instance or 1)
        if repeating and repeat_form == instrument and same_instance:
            return row
        if not repeating and not repeat_form:
            return row
    return None


def form_hash(row: dict[str, str], fields: list[str], instrument: str) -> str:
    """Hash of the instrument's own values: a re-save with nothing changed has the same hash."""
    own = {k: v for k, v in row.items()
           if k == f"{instrument}_complete" or any(k == f or k.startswith(f + "___") for f in fields)}
    return hashlib.sha256(audit.canonical_json(own).encode()).hexdigest()


def fetch_for(client: RedcapClient, protocol: TrialProtocol, t: RedcapTrigger
              ) -> tuple[dict[str, str] | None, list[str]]:
    """The saved data of the trigger's form (I/O: REDCap API)."""
    unique_event = protocol.redcap.unique_event_name(t.event or protocol.redcap.baseline_event)
    rows = client.event_rows(t.record, unique_event)
    fields = client.form_fields(t.instrument)
    repeating = t.instrument == protocol.redcap.adverse_event_form or t.repeat_instance is not None
    return _form_row(rows, t.instrument, t.repeat_instance, repeating), fields


def publish_form(session: Session, *, t: RedcapTrigger, row: dict[str, str] | None,
                 fields: list[str], now: datetime) -> str:
    """Publish `form_saved` unless this exact data was published before. Returns the status."""
    t = session.merge(t)
    t.attempts += 1
    t.done_at = now
    if row is None:
        t.status = "unchanged"
        audit.append(session, actor=ACTOR, role="system", action="redcap.form_absent",
                     entity_type="redcap_trigger", entity_id=t.id, record=t.record, correlation_id=t.id)
        return t.status
    digest = form_hash(row, fields, t.instrument)
    instance = int(row.get("redcap_repeat_instance") or 0) or None
    key = (t.project_id, t.record, t.event or "", t.instrument, instance or 0)
    snap = repository.snapshot(session, *key)
    if snap is not None and snap.data_hash == digest:
        t.status = "unchanged"
        audit.append(session, actor=ACTOR, role="system", action="redcap.form_unchanged",
                     entity_type="redcap_trigger", entity_id=t.id, record=t.record,
                     after={"instrument": t.instrument, "data_sha256": digest}, correlation_id=t.id)
        return t.status
    event = FormSaved(project_id=t.project_id, record=t.record, event=t.event, instrument=t.instrument,
                      repeat_instance=instance,
                      complete_status=int(row.get(f"{t.instrument}_complete") or 0),
                      fields={k: str(v) for k, v in row.items()}, trigger=t.source)
    env = outbox.enqueue(session, event, producer="gateway", correlation_id=t.id, record=t.record)
    if snap is None:
        snap = RedcapSnapshot(project_id=key[0], record=key[1], event=key[2], instrument=key[3],
                              repeat_instance=key[4], data_hash=digest, event_id=env.id, updated_at=now)
    snap.data_hash, snap.event_id, snap.updated_at = digest, env.id, now
    session.add(snap)
    t.status = "published"
    audit.append(session, actor=ACTOR, role="system", action="redcap.form_published",
                 entity_type="redcap_trigger", entity_id=t.id, record=t.record,
                 after={"instrument": t.instrument, "event": t.event, "data_sha256": digest,
                        "event_id": env.id}, correlation_id=t.id)
    return t.status


def process_trigger(engine: Engine, client: RedcapClient, protocol: TrialProtocol,
                    settings: RedcapSettings, t: RedcapTrigger, now: datetime) -> str:
    try:
        row, fields = fetch_for(client, protocol, t)
    except (RedcapUnavailable, RedcapRefused) as exc:
        with unit_of_work(engine) as session:
            t = session.merge(t)
            t.attempts += 1
            t.last_error = str(exc)
            t.next_attempt_at = _retry_at(now, t.attempts, settings)
        log.warning("redcap.fetch_retry", trigger=t.id, attempts=t.attempts, error=str(exc))
        return "retry"
    with unit_of_work(engine) as session:
        return publish_form(session, t=t, row=row, fields=fields, now=now)


# ── write-back ────────────────────────────────────────────────────────────
def stage_allocation_write(session: Session, *, env: Envelope, allocated: Allocated,
                           protocol: TrialProtocol) -> None:
    """Record the write-back for the writer; the event id makes it idempotent."""
    if session.get(RedcapWrite, env.id) is not None:
        return
    r, f = protocol.redcap, protocol.redcap.fields
    values = {
        f.record_id: allocated.record,
        "redcap_event_name": r.unique_event_name(r.baseline_event),
        f.allocation_number: allocated.allocation_number,
        f.allocation_module: allocated.module,
        f.allocation_time: allocated.allocated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        f"{r.allocation_form}_complete": "2",
    }
    now = datetime.now(UTC)
    session.add(RedcapWrite(id=env.id, kind="allocation", project_id=r.project_id,
                            record=allocated.record, event=r.baseline_event,
                            fields=json.dumps(values, sort_keys=True), next_attempt_at=now,
                            created_at=now, correlation_id=env.correlation_id))
    audit.append(session, actor=ACTOR, role="system", action="redcap.write_staged",
                 entity_type="redcap_write", entity_id=env.id, record=allocated.record,
                 after=values, correlation_id=env.correlation_id)


def perform_write(engine: Engine, client: RedcapClient, settings: RedcapSettings, w: RedcapWrite,
                  now: datetime) -> str:
    try:
        client.import_rows([json.loads(w.fields)])
        outcome, error = "written", None
    except RedcapUnavailable as exc:
        outcome, error = "retry", str(exc)
    except RedcapRefused as exc:
        outcome, error = "failed", str(exc)
    latency: float | None = None
    with unit_of_work(engine) as session:
        w = session.merge(w)
        w.attempts += 1
        w.last_error = error
        if outcome == "retry":
            w.next_attempt_at = _retry_at(now, w.attempts, settings)
            return outcome
        w.status = outcome
        w.written_at = now if outcome == "written" else None
        latency = _det_latency(session, w, now)
        audit.append(session, actor=ACTOR, role="system", action=f"redcap.{outcome}",
                     entity_type="redcap_write", entity_id=w.id, record=w.record,
                     after={"kind": w.kind, "attempts": w.attempts, "error": error},
                     correlation_id=w.correlation_id)
        if outcome == "failed":  # permanent: to the dead-letter stream for a person to look at
            outbox.enqueue(session, RedcapWriteFailed(write_id=w.id, record=w.record, kind=w.kind,
                                                 error=error or ""),
                           producer="gateway", record=w.record,
                           correlation_id=w.correlation_id)
    if latency is not None:
        metrics.DET_TO_WRITEBACK.observe(latency)
    return outcome


def _det_latency(session: Session, w: RedcapWrite, now: datetime) -> float | None:
    """Seconds from the DET that started this allocation (its trigger id travels as the
    correlation id) to its write-back; None for other writes and sweep findings."""
    if w.kind != "allocation" or w.status != "written" or not w.correlation_id:
        return None
    trigger = session.get(RedcapTrigger, w.correlation_id)
    if trigger is None or trigger.source != "det":
        return None
    return max(0.0, (now - trigger.received_at).total_seconds())


# ── reconciliation sweep ──────────────────────────────────────────────────
def sweep(engine: Engine, client: RedcapClient, protocol: TrialProtocol, settings: RedcapSettings,
          now: datetime) -> int:
    """Feed every form changed since the last sweep into the trigger path; returns how many.
    Forms whose data matches what was published already are skipped here (cheaply) and
    would be skipped by the trigger path anyway."""
    project_id = protocol.redcap.project_id
    with unit_of_work(engine) as session:
        state = repository.sweep_state(session, project_id)
        since = state.swept_until if state else datetime(2000, 1, 1, tzinfo=UTC)
    rows = client.changed_since(since - timedelta(seconds=settings.sweep_overlap_seconds),
                                settings.server_timezone)
    instruments = known_instruments(protocol)
    found: list[Trigger] = []
    with unit_of_work(engine) as session:
        published = repository.snapshots_of(session, project_id)
        for row in rows:
            event = protocol.redcap.event_of(str(row.get("redcap_event_name") or ""))
            repeat_form = row.get("redcap_repeat_instrument") or ""
            instance = int(row.get("redcap_repeat_instance") or 0) or None
            for instrument in ([repeat_form] if repeat_form else sorted(instruments)):
                if instrument not in instruments or not row.get(f"{instrument}_complete"):
                    continue
                if repeat_form == "" and instrument == protocol.redcap.adverse_event_form:
                    continue
                digest = form_hash(row, client.form_fields(instrument), instrument)
                key = (str(row[protocol.redcap.fields.record_id]), event or "", instrument, instance or 0)
                if published.get(key) == digest:
                    continue
                t = Trigger(project_id, key[0], instrument, event, instance)
                store_trigger(session, trigger=t, body={"sweep": "1"}, source="sweep", now=now)
                found.append(t)
        state = repository.sweep_state(session, project_id) or RedcapSweep(
            project_id=project_id, swept_until=now, last_run_at=now)
        state.swept_until, state.last_run_at = now, now
        session.add(state)
    return len(found)
