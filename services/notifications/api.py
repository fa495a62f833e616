"""REST routes of the notifications service (behind the gateway: /api/v1/notifications/...)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from services.core.auth import CallerDep
from services.core.db import unit_of_work
from services.core.http import SessionDep, deps_dependency
from services.core.internal_token import Caller

from . import follow_ups, outcomes, reporting, service
from .domain import SIGNATURE_HEADER, TIMESTAMP_HEADER
from .models import StaffTask
from .runtime import Runtime
from .schemas import (
    CallbackRead,
    FollowUpRead,
    FollowUpResolve,
    MessageRead,
    OptOutCreate,
    OptOutRead,
    RetentionRead,
    ScheduleRead,
    TaskOutcomeCreate,
    TaskRead,
)

TaskId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a staff task's id")]
FollowUpId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a follow-up's id")]

router = APIRouter(prefix="/v1", tags=["notifications"])


RuntimeDep = Annotated[Runtime, Depends(deps_dependency(Runtime))]


def _actor(caller: Caller) -> dict[str, str]:
    return {"actor": caller.subject, "role": caller.role.value}


def _task_read(session: Session, rt: Runtime, task: StaffTask) -> TaskRead:
    read = TaskRead.model_validate(task, from_attributes=True)
    if task.channel == "phone" and task.state in ("open", "claimed"):
        read.call_script = outcomes.task_text(session, rt, task).body
    if task.channel == "letter":
        read.letter_url = f"/api/v1/notifications/v1/tasks/{task.id}/letter"
    return read


@router.get("/schedules/{record}", response_model=ScheduleRead,
            summary="A participant's timepoints, progress and reminders (blinded)")
def get_schedule(record: str, session: SessionDep, caller: CallerDep,
                 rt: RuntimeDep) -> ScheduleRead:
    return reporting.schedule(session, rt, record)


@router.get("/tasks", response_model=list[TaskRead],
            summary="Phone calls and letters that are due (open or claimed)")
def get_tasks(session: SessionDep, caller: CallerDep, rt: RuntimeDep,
              state: Literal["open", "claimed"] | None = None,
              include_future: bool = False) -> list[TaskRead]:
    tasks = outcomes.list_tasks(session, rt, state=state, include_future=include_future)
    return [_task_read(session, rt, t) for t in tasks]


@router.post("/tasks/{task_id}/claim", response_model=TaskRead, summary="Take a task")
def claim_task(task_id: TaskId, session: SessionDep, caller: CallerDep, rt: RuntimeDep) -> TaskRead:
    task = outcomes.claim_task(session, rt, task_id=task_id, **_actor(caller))
    return _task_read(session, rt, task)


@router.post("/tasks/{task_id}/outcome", response_model=TaskRead,
             summary="Record a call's or letter's outcome (reached, voicemail, wrong_number, sent)")
def task_outcome(task_id: TaskId, body: TaskOutcomeCreate, session: SessionDep, caller: CallerDep,
                 rt: RuntimeDep) -> TaskRead:
    task = outcomes.record_outcome(session, rt, task_id=task_id, outcome=body.outcome,
                                   note=body.note, **_actor(caller))
    return _task_read(session, rt, task)


@router.get("/follow-ups", response_model=list[FollowUpRead],
            summary="Staff follow-ups: unknown e-mails, unscorable baselines, unblindings, ...")
def get_follow_ups(session: SessionDep, caller: CallerDep,
                   state: Literal["open", "done"] | None = "open") -> list[FollowUpRead]:
    return [FollowUpRead.model_validate(f, from_attributes=True)
            for f in follow_ups.list_follow_ups(session, state=state)]


@router.post("/follow-ups/{follow_up_id}/resolve", response_model=FollowUpRead,
             summary="Resolve a follow-up (an unknown e-mail: resend, sent or not_sent)")
def resolve_follow_up(follow_up_id: FollowUpId, body: FollowUpResolve, session: SessionDep,
                      caller: CallerDep, rt: RuntimeDep) -> FollowUpRead:
    done = follow_ups.resolve(session, rt, follow_up_id=follow_up_id, resolution=body.resolution,
                              note=body.note, **_actor(caller))
    return FollowUpRead.model_validate(done, from_attributes=True)


@router.get("/tasks/{task_id}/letter", response_class=HTMLResponse,
            summary="The print-ready reminder letter (HTML, A4, window envelope)")
def task_letter(task_id: TaskId, session: SessionDep, caller: CallerDep,
                rt: RuntimeDep) -> HTMLResponse:
    return HTMLResponse(outcomes.letter(session, rt, task_id=task_id))


@router.post("/participants/{record}/opt-out", response_model=OptOutRead,
             summary="The participant wants no more messages on a channel")
def opt_out(record: str, body: OptOutCreate, session: SessionDep, caller: CallerDep,
            rt: RuntimeDep) -> OptOutRead:
    cancelled = service.opt_out(session, rt, record=record, channel=body.channel,
                                **_actor(caller))
    return OptOutRead(record=record, channel=body.channel, cancelled=cancelled)


@router.get("/reports/retention", response_model=RetentionRead,
            summary="Per timepoint: due, complete, overdue, reminders needed, response rate "
                    "(Wilson 95% CI); per channel: sent, delivered, failed")
def retention(session: SessionDep, caller: CallerDep, rt: RuntimeDep) -> RetentionRead:
    return reporting.retention(session, rt)


@router.get("/messages", response_model=list[MessageRead],
            summary="Delivery states of a participant's messages (never their text)")
def list_messages(session: SessionDep, caller: CallerDep,
                  record: Annotated[str, Query(min_length=1)]) -> list[MessageRead]:
    return reporting.messages(session, record)


@router.post("/sms/callbacks", response_model=CallbackRead,
             summary="Delivery status from the SMS provider (HMAC-signed, idempotent)")
async def sms_callback(request: Request, rt: RuntimeDep) -> CallbackRead:
    body = await request.body()
    timestamp = request.headers.get(TIMESTAMP_HEADER)
    signature = request.headers.get(SIGNATURE_HEADER)

    def apply() -> tuple[str, str | None]:
        with unit_of_work(rt.kernel.engine) as session:
            return outcomes.apply_sms_callback(session, rt, body=body, timestamp=timestamp,
                                               signature=signature,
                                               received_at=datetime.now(UTC))

    status, state = await asyncio.to_thread(apply)
    return CallbackRead(status=status, state=state)  # type: ignore[arg-type]
