"""Use cases of the REDCap integration. Functions that talk to REDCap do the I/O outside
any transaction, then record the outcome in one transaction (state + outbox + audit)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.core import audit, outbox
from services.core.backoff import backoff_seconds
from services.core.db import unit_of_work
from services.core.digests import DigestKey
from services.core.errors import InvalidInput
from services.core.events import (
    Allocated,
    Envelope,
    FormSaved,
    RedcapWriteFailed,
    SealedStageOption,
    StageAllocated,
)
from services.core.events.form_fields import per_consumer
from services.core.protocol import TrialProtocol
from services.core.sealed_events import seal_form_saved
from services.core.sealing import Keyring, Recipient

from . import metrics, repository
from .client import RedcapClient, RedcapRefused, RedcapUnavailable
from .models import RedcapSnapshot, RedcapSweep, RedcapTrigger, RedcapWrite, form_key
from .settings import RedcapSettings
from .trigger import Trigger, known_instruments

log = structlog.get_logger(__name__)
ACTOR = "gateway:redcap"
WRITE_STAGED = "redcap_write_staged"  # session.info: the write drain wakes after this commit


@dataclass(frozen=True)
class FormKeys:
    """The consumers' bus keys a save is sealed to, and the key of the form digests."""

    recipients: dict[str, Recipient]  # consumer → its public bus key
    digest: DigestKey
    # SMART: the gateway's own bus key, which opens each stage's option to write it back.
    stage_options: Keyring | None = None


def _retry_at(now: datetime, attempts: int, s: RedcapSettings) -> datetime:
    wait = backoff_seconds(max(1, attempts), base=s.retry_base_seconds, cap=s.retry_cap_seconds)
    return now + timedelta(seconds=wait)


# ── triggers ──────────────────────────────────────────────────────────────
def enqueue_trigger(session: Session, *, trigger: Trigger, body: dict[str, str], source: str,
                    now: datetime, coalesce: timedelta = timedelta(0)) -> tuple[RedcapTrigger, bool]:
    """Store the trigger, or merge it into the form's pending one (the partial unique index
    allows one): that fetch reads whatever is saved by then. Returns (row, stored anew).

    Replays: a DET body names the form and carries no version, so a replay of an identical
    DET cannot be told from a real re-save of that form without asking REDCap; dropping it
    would lose re-saves. A DET for a form whose last fetch published a change (or that was
    never fetched) is due at once: the first save of a quiet form, and a correction right
    after a save, are not delayed. Once a fetch found nothing new (a replay, or a save that
    changed nothing), a trigger for that form is due only `coalesce` after that fetch, and
    everything arriving meanwhile merges into it: however many replays come, a form costs
    at most one REDCap export per `coalesce` beyond one per real change, and a real re-save
    is still fetched (at most `coalesce` later); unchanged data publishes nothing (the
    snapshot hash)."""
    key = form_key(trigger.project_id, trigger.record, trigger.event, trigger.instrument,
                   trigger.repeat_instance)
    due = now
    if coalesce > timedelta(0):
        replayed = repository.last_replay(session, key)
        if replayed is not None and replayed + coalesce > now:
            due = replayed + coalesce
    waiting = repository.pending_for_form(session, key)
    if waiting is None:
        try:
            with session.begin_nested():  # a concurrent insert of the same form loses here
                row = _store(session, trigger=trigger, key=key, body=body, source=source,
                             now=now, due=due)
            return row, True
        except IntegrityError:
            waiting = repository.pending_for_form(session, key)
            if waiting is None:
                raise
    _merge(session, waiting, source=source, now=now, due=due)
    return waiting, False


def _store(session: Session, *, trigger: Trigger, key: str, body: dict[str, str], source: str,
           now: datetime, due: datetime) -> RedcapTrigger:
    row = RedcapTrigger(
        id=uuid4().hex, source=source, form_key=key, project_id=trigger.project_id,
        record=trigger.record, event=trigger.event, instrument=trigger.instrument,
        repeat_instance=trigger.repeat_instance, body=json.dumps(body, sort_keys=True),
        received_at=now, next_attempt_at=due)
    session.add(row)
    session.flush()
    audit.append(session, actor=ACTOR, role="redcap", action=f"redcap.{source}_received",
                 entity_type="redcap_trigger", entity_id=row.id, record=trigger.record,
                 after={"instrument": trigger.instrument, "event": trigger.event,
                        "repeat_instance": trigger.repeat_instance}, correlation_id=row.id)
    return row


def _merge(session: Session, t: RedcapTrigger, *, source: str, now: datetime,
           due: datetime) -> None:
    """A new save of a form already queued: fetch it (again) soon. A DET lifts a sweep
    finding to DET priority; a merge during a fetch in flight makes the worker fetch again."""
    t.revision += 1
    if source == "det":
        t.source = "det"
    t.next_attempt_at = min(t.next_attempt_at, due)
    session.add(t)
    audit.append(session, actor=ACTOR, role="redcap", action=f"redcap.{source}_merged",
                 entity_type="redcap_trigger", entity_id=t.id, record=t.record,
                 after={"instrument": t.instrument, "event": t.event,
                        "repeat_instance": t.repeat_instance, "revision": t.revision},
                 correlation_id=t.id)


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


def form_hash(row: dict[str, str], fields: list[str], instrument: str, key: DigestKey) -> str:
    """Keyed digest of the instrument's own values: a re-save with nothing changed has the
    same digest; the audit trail's readers cannot test guesses (a yes/no form) against it."""
    own = {k: v for k, v in row.items()
           if k == f"{instrument}_complete" or any(k == f or k.startswith(f + "___") for f in fields)}
    return key.digest(own)


def fetch_for(client: RedcapClient, protocol: TrialProtocol, t: RedcapTrigger
              ) -> tuple[dict[str, str] | None, list[str]]:
    """The saved data of the trigger's form (I/O: REDCap API)."""
    unique_event = protocol.redcap.unique_event_name(t.event or protocol.redcap.baseline_event)
    r = protocol.randomization
    site_from_dag = "site" in r.stratify_by and r.site.field is None and not r.personalized
    rows = client.event_rows(t.record, unique_event, with_dag=site_from_dag)
    fields = client.form_fields(t.instrument)
    repeating = t.instrument == protocol.redcap.adverse_event_form or t.repeat_instance is not None
    return _form_row(rows, t.instrument, t.repeat_instance, repeating), fields


def publish_form(session: Session, *, t: RedcapTrigger, row: dict[str, str] | None,
                 fields: list[str], now: datetime, protocol: TrialProtocol,
                 keys: FormKeys) -> str:
    """Publish the save to each consumer that needs it, cut to its fields and sealed to its
    key, unless this exact data was published before. Returns the status. A notification
    merged while the data was being fetched leaves the trigger pending, due now."""
    fetched_revision = t.revision
    t = _locked(session, t)
    t.attempts += 1
    t.last_error = None
    status = _publish(session, t=t, row=row, fields=fields, now=now, protocol=protocol, keys=keys)
    if t.revision != fetched_revision:
        t.status, t.next_attempt_at, t.done_at = "pending", now, None
        return "refetch"
    t.status, t.done_at = status, now
    return status


def _locked(session: Session, t: RedcapTrigger) -> RedcapTrigger:
    fresh = session.get(RedcapTrigger, t.id, with_for_update=True)
    assert fresh is not None  # triggers are never deleted
    return fresh


def _publish(session: Session, *, t: RedcapTrigger, row: dict[str, str] | None,
             fields: list[str], now: datetime, protocol: TrialProtocol, keys: FormKeys) -> str:
    if row is None:
        audit.append(session, actor=ACTOR, role="system", action="redcap.form_absent",
                     entity_type="redcap_trigger", entity_id=t.id, record=t.record, correlation_id=t.id)
        return "unchanged"
    digest = form_hash(row, fields, t.instrument, keys.digest)
    instance = int(row.get("redcap_repeat_instance") or 0) or None
    key = (t.project_id, t.record, t.event or "", t.instrument, instance or 0)
    snap = repository.snapshot(session, *key)
    if snap is not None and snap.data_hash == digest:
        audit.append(session, actor=ACTOR, role="system", action="redcap.form_unchanged",
                     entity_type="redcap_trigger", entity_id=t.id, record=t.record,
                     after={"instrument": t.instrument, "data_hmac": digest,
                            "digest_key_id": keys.digest.key_id}, correlation_id=t.id)
        return "unchanged"
    saved = FormSaved(project_id=t.project_id, record=t.record, event=t.event, instrument=t.instrument,
                      repeat_instance=instance,
                      complete_status=int(row.get(f"{t.instrument}_complete") or 0),
                      fields={k: str(v) for k, v in row.items()}, trigger=t.source)
    event_ids: dict[str, str] = {}
    for consumer, cut in per_consumer(saved, protocol, fields).items():
        env = outbox.enqueue(session, seal_form_saved(keys.recipients[consumer], cut),
                             producer="gateway", correlation_id=t.id, record=t.record)
        event_ids[consumer] = env.id
    first_id = next(iter(event_ids.values()), "")
    if snap is None:
        snap = RedcapSnapshot(project_id=key[0], record=key[1], event=key[2], instrument=key[3],
                              repeat_instance=key[4], data_hash=digest, event_id=first_id,
                              updated_at=now)
    snap.data_hash, snap.event_id, snap.updated_at = digest, first_id, now
    session.add(snap)
    audit.append(session, actor=ACTOR, role="system", action="redcap.form_published",
                 entity_type="redcap_trigger", entity_id=t.id, record=t.record,
                 after={"instrument": t.instrument, "event": t.event, "data_hmac": digest,
                        "digest_key_id": keys.digest.key_id, "event_ids": event_ids},
                 correlation_id=t.id)
    return "published"


def process_trigger(engine: Engine, client: RedcapClient, protocol: TrialProtocol,
                    settings: RedcapSettings, t: RedcapTrigger, now: datetime,
                    keys: FormKeys) -> str:
    try:
        row, fields = fetch_for(client, protocol, t)
    except (RedcapUnavailable, RedcapRefused) as exc:
        with unit_of_work(engine) as session:
            t = _locked(session, t)
            t.attempts += 1
            t.last_error = str(exc)
            t.next_attempt_at = _retry_at(now, t.attempts, settings)
            attempts = t.attempts
        log.warning("redcap.fetch_retry", trigger=t.id, attempts=attempts, error=str(exc))
        return "retry"
    with unit_of_work(engine) as session:
        return publish_form(session, t=t, row=row, fields=fields, now=now, protocol=protocol,
                            keys=keys)


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
    session.info[WRITE_STAGED] = True
    audit.append(session, actor=ACTOR, role="system", action="redcap.write_staged",
                 entity_type="redcap_write", entity_id=env.id, record=allocated.record,
                 after=values, correlation_id=env.correlation_id)


def stage_stage_write(session: Session, *, env: Envelope, allocated: StageAllocated,
                      protocol: TrialProtocol, keyring: Keyring) -> None:
    """A later stage's allocation (SMART) to its own REDCap fields, in the stage timepoint's
    event on the allocation form (hidden from blinded REDCap roles like the first stage's);
    the option is opened from the payload sealed to the gateway. Idempotent by event id."""
    if session.get(RedcapWrite, env.id) is not None:
        return
    stage = next((s for s in protocol.randomization.stages if s.key == allocated.stage), None)
    if stage is None:
        raise InvalidInput(f"stage {allocated.stage!r} is not in the protocol", field="stage")
    option = SealedStageOption.model_validate(keyring.open_json(
        allocated.sealed, subject=StageAllocated.subject, record=allocated.record)).option
    r = protocol.redcap
    event = protocol.timepoint_by_key[stage.timepoint].redcap_event
    values = {r.fields.record_id: allocated.record, "redcap_event_name": r.unique_event_name(event),
              stage.number_field: allocated.stage_number, stage.option_field: option,
              f"{r.allocation_form}_complete": "2"}
    now = datetime.now(UTC)
    session.add(RedcapWrite(id=env.id, kind="stage_allocation", project_id=r.project_id,
                            record=allocated.record, event=event,
                            fields=json.dumps(values, sort_keys=True), next_attempt_at=now,
                            created_at=now, correlation_id=env.correlation_id))
    session.info[WRITE_STAGED] = True
    # The option is blinded: the audit entry names the fields written, not their values.
    audit.append(session, actor=ACTOR, role="system", action="redcap.write_staged",
                 entity_type="redcap_write", entity_id=env.id, record=allocated.record,
                 after={"kind": "stage_allocation", "stage": stage.key,
                        "stage_number": allocated.stage_number, "event": event,
                        "fields": sorted(values)}, correlation_id=env.correlation_id)


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
          now: datetime, keys: FormKeys) -> int:
    """Feed every form changed since the last sweep into the trigger path; returns how many.
    Forms whose data matches what was published already are skipped here (cheaply) and
    would be skipped by the trigger path anyway; a form with a pending trigger merges into
    it. The allocation form is left out: only the gateway writes it (perform_write), and
    its write-back must not come back as a form save."""
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
            if instrument == protocol.redcap.allocation_form:
                continue
            if repeat_form == "" and instrument == protocol.redcap.adverse_event_form:
                continue
            digest = form_hash(row, client.form_fields(instrument), instrument, keys.digest)
            key = (str(row[protocol.redcap.fields.record_id]), event or "", instrument, instance or 0)
            if published.get(key) == digest:
                continue
            t = Trigger(project_id, key[0], instrument, event, instance)
            # One short transaction per form, as a DET's: it locks the form's pending
            # trigger, then appends to the audit chain, and commits. A sweep-long
            # transaction would hold the chain while locking the next form's trigger,
            # which a DET or the worker holds while waiting for the chain: a deadlock.
            with unit_of_work(engine) as session:
                enqueue_trigger(session, trigger=t, body={"sweep": "1"}, source="sweep", now=now)
            found.append(t)
    # Only once every finding is queued: a sweep cut short is redone from `since`.
    with unit_of_work(engine) as session:
        state = repository.sweep_state(session, project_id) or RedcapSweep(
            project_id=project_id, swept_until=now, last_run_at=now)
        state.swept_until, state.last_run_at = now, now
        session.add(state)
    return len(found)
