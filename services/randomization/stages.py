"""Later-stage (SMART) allocation use cases: take a session and keyword arguments; never commit.

A stage's form saved in REDCap reaches `reach_stage`, which decides exactly once per
participant and stage, in list order, on any number of replicas:

1. an existing stage allocation is returned as it is (no second event);
2. a participant without a (non-pilot) first-stage allocation, or withdrawn, has not
   reached the stage: nothing is allocated (audited as such);
3. the decision rule classes them from the stage value and their baseline value; a value
   that cannot be scored makes the participant need review (audited, announced by
   `StageNeedsReview`, nothing allocated; a corrected save is decided again);
   Without a sealed list or a free slot in the stage stratum the request is parked
   (sealed, `parked_stage`) and decided when a list is sealed or extended, or by the
   free-slot watcher;
4. the sealed list is share-locked, the stage stratum's counter (outcome × first-stage
   arm) is locked, the record is looked up again, the next slot is opened and marked used
   (with a per-stage participant tag), the stage's number counter is taken, and the row,
   the audit entry (a salted digest of the detail) and the `StageAllocated` event (the
   option sealed to the gateway) are written in one transaction. Lock order list →
   stratum → number → audit chain, as for the first stage.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.core import audit, outbox
from services.core.errors import Conflict, NotFound
from services.core.events import StageAllocated, StageNeedsReview
from services.core.protocol.randomization import Stage

from . import repository
from .domain import RandomizationError
from .domain.stages import Unscorable, classify
from .keys import SealedDataError
from .models import NamedCounter, ParkedStage, StageAllocationRow, StageParticipant
from .service import (
    Actor,
    AllocationRace,
    Context,
    ListKeyMismatch,
    NoSealedList,
    StratumExhausted,
    disclose,
    invalid,
    lock_stratum,
    take_next_slot,
)

log = structlog.get_logger(__name__)

STAGE_DETAIL = "tailor.stage-allocation-detail/1"


def number_counter(stage: str) -> str:
    return f"stage_number:{stage}"


def format_stage_number(ctx: Context, stage: str, n: int) -> str:
    r = ctx.protocol.randomization
    return f"{r.allocation_number_prefix}{stage.upper()}-{n:0{r.allocation_number_digits}d}"


def protocol_stage(ctx: Context, key: str) -> Stage:
    for stage in ctx.protocol.randomization.stages:
        if stage.key == key:
            return stage
    raise NotFound(f"{key!r} is not a stage of this protocol", field="stage")


@dataclass(frozen=True)
class StageRequest:
    record: str
    stage: str
    value: str | None  # the rule's field at the stage's timepoint, as REDCap holds it
    source: str  # event | manual
    actor: Actor
    correlation_id: str | None = None


@dataclass(frozen=True)
class StageDisclosure:
    """What unblinds one stage allocation; sealed in its row, shown to unblinded roles."""

    stage: str
    outcome: str  # responders | non_responders
    first_arm: str
    option: str
    stratum: str
    seq: int
    batch: int
    salt: str

    def digest(self, record: str, number: str) -> str:
        body = {"record": record, "stage_number": number, **self.__dict__}
        return hashlib.sha256(audit.canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True)
class StageResult:
    status: Literal["allocated", "existing", "not_reached", "needs_review"]
    row: StageAllocationRow | None = None
    detail: str | None = None  # why not reached / what needs review (names fields only)
    field: str | None = None


# ── what the rules read from other events ─────────────────────────────────────────────


def record_baseline(session: Session, *, record: str, values: dict[str, str],
                    actor: Actor, correlation_id: str | None = None) -> None:
    """Keep the latest baseline values of the stage rules' baseline fields (audited by
    field name; the values are clinical data and stay out of the chain)."""
    row = session.get(StageParticipant, record)
    now = datetime.now(UTC)
    if row is None:
        row = StageParticipant(record=record, baseline="{}", withdrawn=False, updated_at=now)
    stored = json.loads(row.baseline)
    if all(stored.get(k) == v for k, v in values.items()):
        return
    row.baseline = json.dumps({**stored, **values}, sort_keys=True)
    row.updated_at = now
    session.add(row)
    audit.append(session, actor=actor.name, role=actor.role, action="stage.baseline_recorded",
                 entity_type="stage_participant", entity_id=record, record=record,
                 correlation_id=correlation_id, after={"fields": sorted(values)})


def record_withdrawal(session: Session, *, record: str, withdrawn: bool, actor: Actor,
                      correlation_id: str | None) -> None:
    row = session.get(StageParticipant, record)
    if row is not None and row.withdrawn == withdrawn:
        return
    if row is None:
        if not withdrawn:
            return
        row = StageParticipant(record=record, baseline="{}", withdrawn=False,
                               updated_at=datetime.now(UTC))
    row.withdrawn, row.updated_at = withdrawn, datetime.now(UTC)
    session.add(row)
    audit.append(session, actor=actor.name, role=actor.role,
                 action="stage.participant_withdrawn" if withdrawn else "stage.withdrawal_undone",
                 entity_type="stage_participant", entity_id=record, record=record,
                 correlation_id=correlation_id)


# ── the decision ──────────────────────────────────────────────────────────────────────


def stage_allocation(session: Session, record: str, stage: str) -> StageAllocationRow | None:
    return session.exec(select(StageAllocationRow).where(
        col(StageAllocationRow.record) == record, col(StageAllocationRow.stage) == stage)
        .execution_options(populate_existing=True)).first()


def _not_reached(session: Session, req: StageRequest, why: str) -> StageResult:
    audit.append(session, actor=req.actor.name, role=req.actor.role, action="stage.not_reached",
                 entity_type="stage", entity_id=req.stage, record=req.record,
                 correlation_id=req.correlation_id, after={"stage": req.stage, "why": why})
    log.info("stage.not_reached", record=req.record, stage=req.stage, why=why)
    return StageResult("not_reached", detail=why)


def _needs_review(session: Session, ctx: Context, req: StageRequest,
                  err: RandomizationError) -> StageResult:
    field = err.field or "value"
    audit.append(session, actor=req.actor.name, role=req.actor.role, action="stage.needs_review",
                 entity_type="stage", entity_id=req.stage, record=req.record,
                 correlation_id=req.correlation_id,
                 after={"stage": req.stage, "field": field, "reason": str(err)})
    outbox.enqueue(session, StageNeedsReview(record=req.record, stage=req.stage, field=field,
                                             reason=str(err)),
                   producer=ctx.producer, correlation_id=req.correlation_id, record=req.record)
    log.warning("stage.needs_review", record=req.record, stage=req.stage, field=field)
    return StageResult("needs_review", detail=str(err), field=field)


def reach_stage(session: Session, ctx: Context, req: StageRequest) -> StageResult:
    """Decide the participant's allocation at `req.stage` (see the module docstring)."""
    stage = protocol_stage(ctx, req.stage)
    existing = stage_allocation(session, req.record, req.stage)
    if existing is not None:
        return StageResult("existing", existing)
    first = repository.allocation(session, req.record)
    if first is None or first.pilot:
        return _not_reached(session, req, "no first-stage allocation")
    participant = session.get(StageParticipant, req.record)
    if participant is not None and participant.withdrawn:
        return _not_reached(session, req, "withdrawn")
    baseline = json.loads(participant.baseline) if participant is not None else {}
    try:
        outcome = classify(stage.rule, req.value, baseline.get(stage.rule.baseline_field))
    except Unscorable as err:
        return _needs_review(session, ctx, req, err)
    lst = repository.active_list(session, share_lock=True)
    if lst is None:
        raise NoSealedList("no sealed randomization list: the stage waits for one",
                           field="list")
    ctx.check_key(lst)
    design = ctx.design_of(lst)
    first_arm = disclose(ctx, first).arm
    try:
        stratum = design.stage(req.stage).stratum_key(outcome, first_arm)
    except RandomizationError as err:
        raise invalid(err) from None
    counter = lock_stratum(session, ctx, lst, stratum, field="stage")
    again = stage_allocation(session, req.record, req.stage)  # a duplicate won the lock
    if again is not None:
        return StageResult("existing", again)
    opened, slot_row = take_next_slot(
        session, ctx, lst, counter, stratum,
        tag=ctx.key.stage_participant_tag(lst.id, req.stage, req.record), field="stage")
    detail = StageDisclosure(req.stage, outcome, first_arm, opened.slot.module, stratum,
                             opened.slot.seq, slot_row.batch, secrets.token_hex(16))
    return StageResult("allocated", _record(session, ctx, lst.id, req, detail))


def _next_number(session: Session, stage: str) -> int:
    counter = repository.lock_named_counter(session, number_counter(stage))
    if counter is None:  # made with the list: the database was altered
        raise Conflict(f"stage {stage} has no number counter", field="stage")
    counter.value += 1
    session.add(counter)
    return counter.value


def ensure_counters(session: Session, ctx: Context) -> None:
    """Each stage's number counter, made once with the first list that has the stage."""
    for stage in ctx.protocol.randomization.stages:
        if session.get(NamedCounter, number_counter(stage.key)) is None:
            session.add(NamedCounter(name=number_counter(stage.key), value=0))


def _record(session: Session, ctx: Context, list_id: str, req: StageRequest,
            detail: StageDisclosure) -> StageAllocationRow:
    number = format_stage_number(ctx, req.stage, _next_number(session, req.stage))
    now = datetime.now(UTC)
    plain = audit.canonical_json(detail.__dict__).encode()
    row = StageAllocationRow(
        record=req.record, stage=req.stage, stage_number=number, list_id=list_id,
        sealed_detail=ctx.key.seal(STAGE_DETAIL, (list_id, req.record, req.stage, number), plain),
        detail_digest=detail.digest(req.record, number), source=req.source,
        allocated_by=req.actor.name, allocated_at=now, correlation_id=req.correlation_id)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise AllocationRace(f"record {req.record} was allocated at stage {req.stage} "
                             "concurrently; ask again", field="record") from None
    audit.append(session, actor=req.actor.name, role=req.actor.role,
                 action="stage_allocation.created", entity_type="stage_allocation",
                 entity_id=number, record=req.record, correlation_id=req.correlation_id,
                 after={"stage": req.stage, "stage_number": number, "list_id": list_id,
                        "source": req.source, "detail_digest": row.detail_digest})
    if ctx.seal_to_gateway is None:
        raise Conflict("this process holds no gateway bus key to seal the stage option to",
                       field="stage")
    sealed = ctx.seal_to_gateway.seal_json({"option": detail.option},
                                           subject=StageAllocated.subject, record=req.record)
    outbox.enqueue(session, StageAllocated(record=req.record, stage=req.stage,
                                           stage_number=number, allocated_at=now, sealed=sealed),
                   producer=ctx.producer, correlation_id=req.correlation_id, record=req.record)
    # Never the option, the outcome or the arm in a log line.
    log.info("stage_allocation.created", record=req.record, stage=req.stage, stage_number=number)
    return row


# ── waiting for a list or a free slot ─────────────────────────────────────────────────

PARKED = "tailor.parked-stage/1"
WAITING = (NoSealedList, StratumExhausted, ListKeyMismatch)


def park(session: Session, ctx: Context, req: StageRequest, why: Exception) -> None:
    """Keep `req` until a list can decide it (idempotent per record and stage); the
    request is sealed (it holds the participant's value), the row says only that it waits."""
    row = session.get(ParkedStage, (req.record, req.stage))
    if row is not None:
        row.attempts += 1
        session.add(row)
        return
    plain = json.dumps(asdict(req)).encode()
    session.add(ParkedStage(record=req.record, stage=req.stage, parked_at=datetime.now(UTC),
                            sealed_request=ctx.key.seal(PARKED, (req.record, req.stage), plain)))
    session.flush()
    log.warning("stage.parked", record=req.record, stage=req.stage,
                waiting_for=type(why).__name__)
    audit.append(session, actor=req.actor.name, role=req.actor.role, action="stage.parked",
                 entity_type="stage", entity_id=req.stage, record=req.record,
                 correlation_id=req.correlation_id, after={"stage": req.stage, "waiting": True})


def redrive(session: Session, ctx: Context) -> int:
    """Decide every parked stage request a list can serve now; returns how many were."""
    done = 0
    rows = list(session.exec(select(ParkedStage).order_by(col(ParkedStage.parked_at))))
    for row in rows:
        try:
            data = json.loads(ctx.key.open(PARKED, (row.record, row.stage), row.sealed_request))
            req = StageRequest(**{**data, "actor": Actor(**data["actor"])})
            with session.begin_nested():
                reach_stage(session, ctx, req)
                session.delete(row)
                session.flush()
                audit.append(session, actor="service:randomization", role="system",
                             action="stage.unparked", entity_type="stage", entity_id=row.stage,
                             record=row.record)
            done += 1
        except WAITING:
            continue  # still waiting: the savepoint undid this attempt
        except Exception as exc:  # a broken request must not stop the others or the seal
            log.error("stage.redrive_failed", record=row.record, stage=row.stage,
                      error=type(exc).__name__)
    return done


# ── unblinded reads ───────────────────────────────────────────────────────────────────


def disclose_stage(ctx: Context, row: StageAllocationRow) -> StageDisclosure:
    try:
        plain = ctx.key.open(STAGE_DETAIL, (row.list_id, row.record, row.stage, row.stage_number),
                             row.sealed_detail)
    except SealedDataError:
        raise Conflict(f"the sealed detail of stage allocation {row.stage_number} does not "
                       "open: another key, or the row was altered", field="record") from None
    return StageDisclosure(**json.loads(plain))


def stage_allocations(session: Session) -> list[StageAllocationRow]:
    return list(session.exec(select(StageAllocationRow).order_by(
        col(StageAllocationRow.allocated_at), col(StageAllocationRow.stage_number))))


def stages_of(session: Session, record: str) -> list[StageAllocationRow]:
    return list(session.exec(select(StageAllocationRow)
                             .where(col(StageAllocationRow.record) == record)
                             .order_by(col(StageAllocationRow.allocated_at))))


def unblinded_stages_of(session: Session, ctx: Context, *, record: str,
                        actor: Actor) -> list[tuple[StageAllocationRow, StageDisclosure]]:
    """One participant's stage allocations with their options; each read is audited."""
    rows = stages_of(session, record)
    for row in rows:
        audit.append(session, actor=actor.name, role=actor.role,
                     action="stage_allocation.unblinded_read", entity_type="stage_allocation",
                     entity_id=row.stage_number, record=record)
    return [(row, disclose_stage(ctx, row)) for row in rows]


def unblinded_stages(session: Session, ctx: Context, *,
                     actor: Actor) -> list[tuple[StageAllocationRow, StageDisclosure]]:
    """Every stage allocation with its option (study manager, DSMB); the read is audited."""
    rows = stage_allocations(session)
    audit.append(session, actor=actor.name, role=actor.role,
                 action="stage_allocations.unblinded_listed", entity_type="stage_allocation",
                 entity_id="*", after={"stage_allocations": len(rows)})
    return [(row, disclose_stage(ctx, row)) for row in rows]


def stage_view(row: StageAllocationRow, d: StageDisclosure | None) -> dict[str, Any]:
    """The API shape: blinded (d None) without option, outcome or arm."""
    out: dict[str, Any] = {"record": row.record, "stage": row.stage,
                           "stage_number": row.stage_number, "allocated_at": row.allocated_at}
    if d is not None:
        out.update(option=d.option, outcome=d.outcome, first_arm=d.first_arm,
                   stratum=d.stratum, seq=d.seq, batch=d.batch, list_id=row.list_id,
                   source=row.source)
    return out
