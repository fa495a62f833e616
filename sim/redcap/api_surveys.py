"""content=surveyLink, surveyQueueLink, surveyAccessCode, surveyReturnCode, participantList."""

from __future__ import annotations

from typing import Any

from .api_result import ApiResult
from .context import ProjectContext
from .formats import render_rows
from .layout import complete_field
from .params import ApiError, ApiRequest
from .surveys import Place, participant, place_of, queue_hash, queue_url, survey_url

PARTICIPANT_COLUMNS = ["email", "email_occurrence", "identifier", "phone", "record",
                       "invitation_sent_status", "invitation_send_time", "response_status",
                       "survey_access_code", "survey_link", "survey_queue_link"]


def _place(ctx: ProjectContext, req: ApiRequest) -> Place:
    return place_of(ctx, req.get("record"), req.get("instrument"), req.get("event"),
                    req.get("repeat_instance", "1"))


def survey_link(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    entry = participant(ctx, _place(ctx, req))
    return ApiResult.text(survey_url(req.base_url, entry["hash"]))


def survey_access_code(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    return ApiResult.text(participant(ctx, _place(ctx, req))["access_code"])


def survey_return_code(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    place = _place(ctx, req)
    if ctx.design.surveys[place.instrument].get("save_and_return", "0") != "1":
        raise ApiError(400, f"The survey '{place.instrument}' does not have Save & Return "
                       "Later enabled")
    return ApiResult.text(participant(ctx, place)["return_code"])


def survey_queue_link(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    record = req.get("record")
    if not record:
        raise ApiError(400, 'The parameter "record" is missing')
    if not ctx.design.surveys:
        raise ApiError(400, "The survey queue is not enabled in this project")
    if record not in {r.record for r in ctx.store.records(ctx.pid)}:
        raise ApiError(400, f"The record '{record}' does not exist")
    return ApiResult.text(queue_url(req.base_url, queue_hash(ctx, record)))


def participant_list(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """Every record of the caller's view as a participant of the survey in the event."""
    instrument, event = req.get("instrument"), req.get("event")
    own_dag = ctx.user_dag()
    rows: list[dict[str, Any]] = []
    email_field = str(ctx.project.settings.get("survey_email_field", ""))
    data = ctx.store.data(ctx.pid)
    arm = ctx.design.arm_of_event(event) if event else None
    for r in ctx.store.records(ctx.pid):
        if (own_dag and r.dag != own_dag) or (arm is not None and r.arm_num != arm):
            continue
        place = place_of(ctx, r.record, instrument, event, "1")
        entry = participant(ctx, place)
        values = data.get((r.record, place.event, "", 1), {})
        status = entry["response"] or (2 if values.get(complete_field(instrument)) == "2" else 0)
        rows.append({"email": values.get(email_field, "") if email_field else "",
                     "email_occurrence": 1 if email_field and values.get(email_field) else "",
                     "identifier": "", "phone": "", "record": r.record,
                     "invitation_sent_status": 0, "invitation_send_time": "",
                     "response_status": status, "survey_access_code": entry["access_code"],
                     "survey_link": survey_url(req.base_url, entry["hash"]),
                     "survey_queue_link": queue_url(req.base_url, queue_hash(ctx, r.record))})
    if not rows and instrument not in ctx.design.surveys:
        raise ApiError(400, f"The instrument '{instrument}' is not enabled as a survey")
    return ApiResult.data(render_rows(rows, req.format, PARTICIPANT_COLUMNS), req.format)
