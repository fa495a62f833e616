"""Today: what needs a person now — staff tasks, SAE reporting obligations, participants
whose baseline could not be scored, allocations not written back to REDCap, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .client import Answer
from .format import countdown, seg
from .web import PATH, PageRefused, VisitDep, visit_form

router = APIRouter(prefix=f"{PATH}/today", include_in_schema=False)
TASKS = "/api/v1/notifications/v1/tasks"
FOLLOW_UPS = "/api/v1/notifications/v1/follow-ups"
# An unknown e-mail is settled by resending, or by saying it was or was not sent;
# every other follow-up is simply done.
RESOLUTIONS = {"unknown_email": ("resend", "sent", "not_sent")}
OBLIGATIONS = "/api/v1/safety/v1/obligations"
DEAD_LETTERS = "/api/v1/ops/dead-letters"
HEALTH = "/api/v1/ops/health"
AUDIT = "/api/v1/audit"
OUTCOMES = ("reached", "voicemail", "wrong_number", "sent")


async def _audited(visit: VisitDep, service: str, action: str) -> Answer | None:
    """Entries of one action in one chain (for monitors, who read the audit trail)."""
    if not visit.may("GET", AUDIT):
        return None
    return await visit.api.get(AUDIT, service=service, action=action, limit=50)


@router.get("", response_class=HTMLResponse)
async def today(visit: VisitDep) -> Response:
    page = visit.require("today")
    now = datetime.now(UTC)
    tasks = await visit.api.get(TASKS) if visit.may("GET", TASKS) else None
    follow_ups = await visit.api.get(FOLLOW_UPS) if visit.may("GET", FOLLOW_UPS) else None
    obligations = await visit.api.get(OBLIGATIONS) if visit.may("GET", OBLIGATIONS) else None
    open_obligations = []
    if obligations is not None and obligations.ok:
        for row in obligations.body:
            if row.get("status") != "sent":
                text, tone = countdown(row.get("deadline_at"), now)
                open_obligations.append({**row, "countdown": text, "tone": tone})
    dead = await visit.api.get(DEAD_LETTERS, limit=50) if visit.may("GET", DEAD_LETTERS) else None
    health = await visit.api.get(HEALTH) if visit.may("GET", HEALTH) else None
    return visit.render("today.html", page, tasks=tasks, follow_ups=follow_ups,
                        resolutions=RESOLUTIONS, obligations=obligations,
                        open_obligations=open_obligations, dead=dead, health=health,
                        needs_review=await _audited(visit, "allocation", "prediction.needs_review"),
                        write_failures=await _audited(visit, "gateway", "redcap.failed"),
                        outcomes=OUTCOMES, now=now)


def _after(visit: VisitDep, answer: Answer, done: str) -> RedirectResponse:
    if answer.ok:
        return visit.done(f"{PATH}/today", "ok", done)
    return visit.done(f"{PATH}/today", "error", f"Not done: {answer.detail}")


@router.post("/tasks/{task_id}/claim")
async def claim(task_id: str, visit: VisitDep) -> Response:
    visit.require("today")
    await visit_form(visit)
    answer = await visit.api.post(f"{TASKS}/{seg(task_id)}/claim")
    return _after(visit, answer, f"Task {task_id} is yours.")


@router.post("/tasks/{task_id}/outcome")
async def outcome(task_id: str, visit: VisitDep) -> Response:
    visit.require("today")
    form = await visit_form(visit)
    body = {"outcome": form.get("outcome", "")}
    if form.get("note", "").strip():
        body["note"] = form["note"].strip()
    answer = await visit.api.post(f"{TASKS}/{seg(task_id)}/outcome", body)
    return _after(visit, answer, f"Outcome of task {task_id} recorded: {body['outcome']}.")


@router.post("/follow-ups/{follow_up_id}/resolve")
async def resolve(follow_up_id: str, visit: VisitDep) -> Response:
    visit.require("today")
    form = await visit_form(visit)
    body = {"resolution": form.get("resolution", "done")}
    if form.get("note", "").strip():
        body["note"] = form["note"].strip()
    answer = await visit.api.post(f"{FOLLOW_UPS}/{seg(follow_up_id)}/resolve", body)
    return _after(visit, answer, f"Follow-up {follow_up_id} resolved: {body['resolution']}.")


@router.get("/tasks/{task_id}/letter", response_class=HTMLResponse)
async def letter(task_id: str, visit: VisitDep) -> Response:
    visit.require("today")
    answer = await visit.api.get(f"{TASKS}/{seg(task_id)}/letter")
    if not answer.ok:
        raise PageRefused(answer.status, "No letter", answer.detail)
    return HTMLResponse(answer.text)


@router.post("/obligations/{obligation_id}/acknowledge")
async def acknowledge(obligation_id: str, visit: VisitDep) -> Response:
    visit.require("today")
    form = await visit_form(visit)
    body = {"note": form["note"].strip()} if form.get("note", "").strip() else {}
    answer = await visit.api.post(f"{OBLIGATIONS}/{seg(obligation_id)}/acknowledge", body)
    return _after(visit, answer, "Obligation acknowledged: escalation stopped; the clock runs on.")


@router.post("/obligations/{obligation_id}/sent")
async def mark_sent(obligation_id: str, visit: VisitDep) -> Response:
    visit.require("today")
    form = await visit_form(visit)
    body = {"note": form["note"].strip()} if form.get("note", "").strip() else {}
    answer = await visit.api.post(f"{OBLIGATIONS}/{seg(obligation_id)}/sent", body)
    return _after(visit, answer, "Obligation marked as sent.")
