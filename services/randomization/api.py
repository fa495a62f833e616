"""Routes of the randomization service: parse, authorize (CallerDep), call, shape by role.

Every route's roles are in `services.core.roles.PERMISSIONS` (`/api/v1/randomization/v1/…`).
The audit trail (`/v1/audit`, `/v1/audit/verify`) is the kernel's (services/core/audit_api.py).
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request, Response
from sqlmodel import Session

from services.core.auth import CallerDep, view_of
from services.core.errors import InvalidInput
from services.core.http import SessionDep, deps_dependency
from services.core.internal_token import Caller
from services.core.roles import Role, View, find_rule

from . import groups, lists, reports, repository, service, stages
from .bootstrap import RandomizationDeps
from .domain import ListCommitment
from .models import AllocationRow, GroupMember, RandomizationGroup, RandomizationList
from .schemas import (
    AllocationBlinded,
    AllocationCreate,
    AllocationUnblinded,
    BalanceBlinded,
    BalanceUnblinded,
    CloseAllocation,
    CommitmentRead,
    EmergencyUnblindedRead,
    EmergencyUnblinding,
    GroupAdmit,
    GroupBlinded,
    GroupClose,
    GroupMemberRead,
    GroupUnblinded,
    ListExtend,
    ListGenerate,
    ListRead,
    ListSummary,
    MinimizationDecision,
    ModuleBalanceRead,
    SlotRef,
    StageAllocationBlinded,
    StageAllocationCreate,
    StageAllocationUnblinded,
    StageBalanceRead,
    StageDecisionRead,
    StratumBalanceRead,
    StratumFlagRead,
    UnblindedListItem,
    UnsealedDoneRead,
    UnsealedListRead,
    UnsealedSlotRead,
    UnsealPendingRead,
    UnsealRequest,
)
from .service import Actor, Context, Disclosure

router = APIRouter(prefix="/v1")
MAX_CSV_BYTES = 20 * 1024 * 1024


def _context(deps: Annotated[RandomizationDeps, Depends(deps_dependency(RandomizationDeps))]
             ) -> Context:
    return deps.context


ContextDep = Annotated[Context, Depends(_context)]


def _request_id() -> str | None:
    return structlog.contextvars.get_contextvars().get("request_id")


# ── lists ───────────────────────────────────────────────────────────────────────────


def _list_view(session: Session, ctx: Context, lst: RandomizationList,
               caller: Caller) -> ListRead | ListSummary:
    if caller.role is not Role.STATISTICIAN:  # slot counts follow allocations
        return ListSummary.model_validate(lst, from_attributes=True)
    design = ctx.design_of(lst)
    totals = reports.totals(session, ctx, lst)
    strata = [StratumFlagRead(stratum=key, running_low=key in totals.running_low)
              for key in design.stratum_keys]
    fields = {name: getattr(lst, name) for name in ListSummary.model_fields}
    return ListRead(**fields, created_by=lst.created_by,
                    low_slots_threshold=design.low_slots_threshold,
                    low_slots_alarm_batch=design.low_slots_alarm_batch, slots=totals.slots,
                    used=totals.used, free=totals.free, strata=strata)


@router.get("/lists", response_model=list[ListRead] | list[ListSummary], tags=["lists"])
def get_lists(session: SessionDep, ctx: ContextDep, caller: CallerDep) -> list:
    return [_list_view(session, ctx, lst, caller) for lst in repository.all_lists(session)]


@router.post("/lists", status_code=201, response_model=ListRead, tags=["lists"],
             summary="Generate a list from the protocol's design and a fresh seed")
def generate_list(body: ListGenerate, session: SessionDep, ctx: ContextDep,
                  caller: CallerDep) -> ListRead | ListSummary:
    lst = lists.generate(session, ctx, slots_per_stratum=body.slots_per_stratum,
                         actor=Actor.of(caller))
    return _list_view(session, ctx, lst, caller)


async def _csv_body(request: Request) -> str:
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise InvalidInput(f"the list is larger than {MAX_CSV_BYTES} bytes", field="body")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the list must be UTF-8 text (CSV)", field="body") from None


@router.post("/lists/import", status_code=201, response_model=ListRead, tags=["lists"],
             summary="Import a list made elsewhere (CSV body: stratum,seq,block,block_length,"
                     "module,arm)",
             responses={422: {"description": "every problem of the list, with row and column"}},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "text/csv": {"schema": {"type": "string"}}}}})
def import_list(text: Annotated[str, Depends(_csv_body)], session: SessionDep, ctx: ContextDep,
                caller: CallerDep) -> ListRead | ListSummary:
    # A defective list raises InvalidList: a 422 naming every problem (core's mapping).
    lst = lists.import_csv(session, ctx, text=text, actor=Actor.of(caller))
    return _list_view(session, ctx, lst, caller)


def _commitment_read(commitment: ListCommitment) -> CommitmentRead:
    return CommitmentRead(list_id=commitment.list_id, digest=commitment.digest(),
                          statement=commitment.statement())


@router.post("/lists/{list_id}/seal", response_model=CommitmentRead, tags=["lists"])
def seal_list(list_id: str, session: SessionDep, ctx: ContextDep,
              caller: CallerDep) -> CommitmentRead:
    return _commitment_read(lists.seal(session, ctx, list_id=list_id, actor=Actor.of(caller)))


@router.post("/lists/{list_id}/extend", response_model=CommitmentRead, tags=["lists"])
def extend_list(list_id: str, body: ListExtend, session: SessionDep, ctx: ContextDep,
                caller: CallerDep) -> CommitmentRead:
    return _commitment_read(lists.extend(session, ctx, list_id=list_id, stratum=body.stratum,
                                         slots=body.slots, actor=Actor.of(caller)))


@router.get("/lists/{list_id}/commitment", response_model=CommitmentRead, tags=["lists"])
def get_commitment(list_id: str, session: SessionDep, _caller: CallerDep) -> CommitmentRead:
    return _commitment_read(lists.published_commitment(session, list_id))


def _unseal_roles() -> list[str]:
    rule = find_rule("POST", f"/api/v1/{service.SERVICE}/v1/lists/{{list_id}}/unseal")
    return sorted(r.value for r in rule.roles) if rule and rule.together else []


@router.post("/lists/{list_id}/close", response_model=ListSummary, tags=["lists"],
             summary="End allocation on the sealed list (study manager, reason required); "
                     "the list may then be unsealed")
def close_allocation(list_id: str, body: CloseAllocation, session: SessionDep,
                     caller: CallerDep) -> ListSummary:
    lst = lists.close(session, list_id=list_id, reason=body.reason, actor=Actor.of(caller))
    return ListSummary.model_validate(lst, from_attributes=True)


@router.post("/lists/{list_id}/unseal", response_model=UnsealedDoneRead | UnsealPendingRead,
             tags=["lists"], responses={202: {"model": UnsealPendingRead}},
             summary="After closure: one role requests, the other confirms, each with a reason")
def unseal_list(list_id: str, body: UnsealRequest, response: Response, session: SessionDep,
                ctx: ContextDep, caller: CallerDep) -> UnsealedDoneRead | UnsealPendingRead:
    outcome = lists.unseal(session, ctx, list_id=list_id, actor=Actor.of(caller),
                           reason=body.reason, together=_unseal_roles())
    if isinstance(outcome, lists.UnsealPending):
        response.status_code = 202
        return UnsealPendingRead(list_id=outcome.list_id, requested_by=outcome.requested_by,
                                 requested_role=outcome.requested_role,
                                 awaiting_roles=list(outcome.awaiting_roles),
                                 expires_at=outcome.expires_at)
    return UnsealedDoneRead(list_id=outcome.list_id,
                            commitment_digest=outcome.commitment.digest(),
                            verified=outcome.verified, problems=len(outcome.problems))


@router.get("/lists/{list_id}/unsealed", response_model=UnsealedListRead, tags=["lists"],
            summary="The unsealed list: seed and every slot with its arm (unblinded roles)")
def get_unsealed_list(list_id: str, session: SessionDep, ctx: ContextDep,
                      caller: CallerDep) -> UnsealedListRead:
    opened = lists.read_unsealed(session, ctx, list_id=list_id, actor=Actor.of(caller))
    return UnsealedListRead(
        list_id=opened.list_id, source=opened.source, seed=opened.seed.hex(),
        commitment_digest=opened.commitment.digest(), commitment=opened.commitment.statement(),
        verified=opened.verified, problems=list(opened.problems),
        slots=[UnsealedSlotRead(**s.slot._asdict(), salt=s.salt.hex(), batch=s.batch, used=s.used)
               for s in opened.slots])


# ── allocations ─────────────────────────────────────────────────────────────────────


def _unblinded(row: AllocationRow, d: Disclosure) -> AllocationUnblinded:
    slot = SlotRef(seq=d.seq, batch=d.batch) if d.seq is not None and d.batch is not None else None
    decision = None
    if d.decision is not None and d.seq is not None:
        decision = MinimizationDecision(decision=d.seq, levels=d.levels or {}, **d.decision)
    return AllocationUnblinded(record=row.record, allocation_number=row.allocation_number,
                               module=row.module, allocated_at=row.allocated_at,
                               cluster=d.cluster, arm=d.arm, stratum=d.stratum, slot=slot,
                               minimization=decision, group=d.group, pilot=row.pilot,
                               list_id=row.list_id,
                               source=row.source)


@router.post("/allocations", response_model=AllocationUnblinded, tags=["allocations"],
             status_code=201, summary="Manual allocation (study manager) when REDCap or the bus is down")
def create_allocation(body: AllocationCreate, response: Response, session: SessionDep,
                      ctx: ContextDep, caller: CallerDep) -> AllocationUnblinded:
    row, created = service.allocate(session, ctx, service.AllocationRequest(
        record=body.record, cluster=body.cluster, site=body.site, levels=body.levels,
        pilot=body.pilot, source="manual", actor=Actor.of(caller), correlation_id=_request_id(),
        reason=body.reason))
    if not created:
        response.status_code = 200
    return _unblinded(row, service.disclose(ctx, row))


@router.get("/allocations/unblinded", response_model=list[UnblindedListItem], tags=["allocations"],
            summary="Every allocation with arm and cluster (study manager, DSMB); audited")
def list_unblinded(session: SessionDep, ctx: ContextDep, caller: CallerDep) -> list[UnblindedListItem]:
    pairs = service.unblinded_all(session, ctx, actor=Actor.of(caller))
    return [UnblindedListItem(record=r.record, module=r.module, arm=d.arm, cluster=d.cluster,
                              allocated_at=r.allocated_at, pilot=r.pilot) for r, d in pairs]


@router.get("/allocations/{record}", response_model=AllocationUnblinded | AllocationBlinded,
            tags=["allocations"], summary="Blinded (module, number, time) or unblinded, by role")
def get_allocation(record: str, session: SessionDep, ctx: ContextDep,
                   caller: CallerDep) -> AllocationUnblinded | AllocationBlinded:
    if view_of(caller) is View.UNBLINDED:
        return _unblinded(*service.unblinded(session, ctx, record=record, actor=Actor.of(caller)))
    row = service.allocation_of(session, record)
    return AllocationBlinded(record=row.record, allocation_number=row.allocation_number,
                             module=row.module, allocated_at=row.allocated_at)


@router.post("/allocations/{record}/emergency-unblinding", response_model=EmergencyUnblindedRead,
             tags=["allocations"], summary="Unblind one participant in an emergency (reason "
                                           "required); later stages' options too")
def emergency_unblinding(record: str, body: EmergencyUnblinding, session: SessionDep,
                         ctx: ContextDep, caller: CallerDep) -> EmergencyUnblindedRead:
    first = _unblinded(*service.emergency_unblind(session, ctx, record=record, reason=body.reason,
                                                  actor=Actor.of(caller),
                                                  correlation_id=_request_id()))
    later = [StageAllocationUnblinded(**stages.stage_view(r, d)) for r, d in
             stages.unblinded_stages_of(session, ctx, record=record, actor=Actor.of(caller))]
    return EmergencyUnblindedRead(**first.model_dump(), stages=later)


@router.get("/reports/balance", response_model=BalanceUnblinded | BalanceBlinded, tags=["reports"])
def get_balance(session: SessionDep, ctx: ContextDep,
                caller: CallerDep) -> BalanceUnblinded | BalanceBlinded:
    unblinded = view_of(caller) is View.UNBLINDED
    report = reports.balance(session, ctx, unblinded=unblinded)
    by_module = [ModuleBalanceRead(module=m.module, allocated=m.allocated) for m in report.by_module]
    if not unblinded:
        return BalanceBlinded(list_id=report.list_id, by_module=by_module)
    return BalanceUnblinded(list_id=report.list_id, by_module=by_module,
                            by_stratum=[StratumBalanceRead(**s.__dict__)
                                        for s in report.by_stratum or []])


# ── groups (group randomization) ─────────────────────────────────────────────────────


def _members(session: Session, members: list[GroupMember]) -> list[GroupMemberRead]:
    numbers = groups.allocation_numbers(session, [m.record for m in members
                                                  if m.status == "allocated"])
    return [GroupMemberRead(record=m.record, status=m.status, review_reason=m.review_reason,
                            allocation_number=numbers.get(m.record)) for m in members]


def _group_view(session: Session, ctx: Context, group: RandomizationGroup,
                members: list[GroupMember], caller: Caller) -> GroupBlinded | GroupUnblinded:
    common = {"group": group.id, "status": group.status, "opened_at": group.opened_at,
              "closed_at": group.closed_at, "module": group.module,
              "members": _members(session, members)}
    if view_of(caller) is not View.UNBLINDED:
        return GroupBlinded(**common)
    d = groups.unblinded_read(session, ctx, group, Actor.of(caller))
    slot = SlotRef(seq=d.seq, batch=d.batch) if d and d.seq is not None and d.batch is not None \
        else None
    return GroupUnblinded(**common, arm=d.arm if d else None, stratum=d.stratum if d else None,
                          slot=slot, list_id=group.list_id)


@router.get("/groups", response_model=list[GroupUnblinded] | list[GroupBlinded], tags=["groups"],
            summary="Every group with its members; arm and stratum for unblinded roles (audited)")
def get_groups(session: SessionDep, ctx: ContextDep, caller: CallerDep) -> list:
    return [_group_view(session, ctx, g, m, caller) for g, m in groups.all_groups(session)]


@router.get("/groups/{group_id}", response_model=GroupUnblinded | GroupBlinded, tags=["groups"])
def get_group(group_id: str, session: SessionDep, ctx: ContextDep,
              caller: CallerDep) -> GroupBlinded | GroupUnblinded:
    return _group_view(session, ctx, *groups.group_of(session, group_id), caller)


@router.post("/groups/{group_id}/close", response_model=GroupUnblinded | GroupBlinded,
             tags=["groups"],
             summary="Randomize a pre-formed group: its stratum's next group slot; every member "
                     "inherits its arm and is written back to REDCap")
def close_group(group_id: str, body: GroupClose, session: SessionDep, ctx: ContextDep,
                caller: CallerDep) -> GroupBlinded | GroupUnblinded:
    closed = groups.close(session, ctx, group_id=group_id, actor=Actor.of(caller),
                          reason=body.reason, correlation_id=_request_id())
    return _group_view(session, ctx, *groups.group_of(session, closed.group.id), caller)


@router.post("/groups/{group_id}/members/{record}/admit", response_model=AllocationUnblinded,
             tags=["groups"],
             summary="Admit a late member to their closed group's arm (study manager, reason)")
def admit_member(group_id: str, record: str, body: GroupAdmit, session: SessionDep,
                 ctx: ContextDep, caller: CallerDep) -> AllocationUnblinded:
    row = groups.admit(session, ctx, group_id=group_id, record=record, actor=Actor.of(caller),
                       reason=body.reason, correlation_id=_request_id())
    return _unblinded(row, service.disclose(ctx, row))


# ── later stages (SMART) ─────────────────────────────────────────────────────────────


@router.get("/stages/allocations", response_model=list[StageAllocationUnblinded],
            tags=["stages"], summary="Every later-stage allocation with its option (study "
                                     "manager, DSMB); audited")
def list_stage_allocations(session: SessionDep, ctx: ContextDep,
                           caller: CallerDep) -> list[StageAllocationUnblinded]:
    pairs = stages.unblinded_stages(session, ctx, actor=Actor.of(caller))
    return [StageAllocationUnblinded(**stages.stage_view(r, d)) for r, d in pairs]


@router.get("/stages/balance", response_model=list[StageBalanceRead], tags=["stages"])
def get_stage_balance(session: SessionDep, ctx: ContextDep,
                      _caller: CallerDep) -> list[StageBalanceRead]:
    return [StageBalanceRead(stage=stage, **b.__dict__)
            for stage, b in reports.stage_balances(session, ctx)]


@router.get("/allocations/{record}/stages",
            response_model=list[StageAllocationUnblinded] | list[StageAllocationBlinded],
            tags=["stages"], summary="A participant's later-stage allocations, shaped by role")
def get_record_stages(record: str, session: SessionDep, ctx: ContextDep,
                      caller: CallerDep) -> list:
    if view_of(caller) is not View.UNBLINDED:
        return [StageAllocationBlinded(**stages.stage_view(r, None))
                for r in stages.stages_of(session, record)]
    return [StageAllocationUnblinded(**stages.stage_view(r, d))
            for r, d in stages.unblinded_stages_of(session, ctx, record=record,
                                                   actor=Actor.of(caller))]


@router.post("/stages/allocations", response_model=StageDecisionRead, tags=["stages"],
             summary="Manual stage decision (study manager) when REDCap or the bus is down")
def create_stage_allocation(body: StageAllocationCreate, response: Response, session: SessionDep,
                            ctx: ContextDep, caller: CallerDep) -> StageDecisionRead:
    result = stages.reach_stage(session, ctx, stages.StageRequest(
        record=body.record, stage=body.stage, value=body.value, source="manual",
        actor=Actor.of(caller), correlation_id=_request_id()))
    response.status_code = 201 if result.status == "allocated" else 200
    allocation = None
    if result.row is not None:
        allocation = StageAllocationUnblinded(
            **stages.stage_view(result.row, stages.disclose_stage(ctx, result.row)))
    return StageDecisionRead(status=result.status, detail=result.detail, field=result.field,
                             allocation=allocation)
