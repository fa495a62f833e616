"""`POST /api/`: REDCap's single API endpoint, dispatched on `content` and `action`.

Every call needs a token (32 hex characters for a project, 64 for a super token);
errors come back in the requested return format with REDCap's status codes.
An API import fires no Data Entry Trigger, exactly like REDCap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from . import api_design, api_meta, api_records
from .api_result import ApiResult
from .checks import DesignError
from .context import ProjectContext
from .emulator import Emulator
from .formats import FORMATS, ImportFormatError, parse_rows
from .odm_export import project_xml
from .params import ApiError, ApiRequest

log = logging.getLogger("sim.redcap")
Handler = Callable[[ProjectContext, ApiRequest], ApiResult]

EXPORTS: dict[str, Handler] = {
    "record": api_records.record_export, "metadata": api_meta.metadata,
    "instrument": api_meta.instruments, "event": api_meta.events, "arm": api_meta.arms,
    "formEventMapping": api_meta.form_event_mapping,
    "repeatingFormsEvents": api_meta.repeating_forms_events,
    "exportFieldNames": api_meta.export_field_names, "dag": api_meta.dags, "log": api_meta.log,
    "project": api_meta.project_info,
    "generateNextRecordName": api_records.generate_next_record_name,
}
IMPORTS: dict[str, Handler] = {
    "record": api_records.record_import, "metadata": api_design.import_metadata,
    "arm": api_design.import_arms, "event": api_design.import_events,
    "formEventMapping": api_design.import_mapping,
    "repeatingFormsEvents": api_design.import_repeating,
}
DELETES: dict[str, Handler] = {"record": api_records.record_delete}


def router(emulator: Emulator) -> APIRouter:
    api = APIRouter()

    @api.post("/api/", include_in_schema=False)
    async def redcap_api(request: Request) -> Response:
        form = await request.form()
        req = ApiRequest.from_pairs((k, v) for k, v in form.multi_items() if isinstance(v, str))
        fault = emulator.faults.take(req.content)
        if fault is not None and fault.mode == "stall":
            await asyncio.sleep(fault.seconds)
        elif fault is not None:
            result = ApiResult.error(fault.status, "The server encountered an error processing "
                                     "your request (emulated fault).", req.return_format)
            return Response(result.body, result.status, media_type=result.media_type)
        result = await run_in_threadpool(answer, emulator, req)
        return Response(result.body, result.status, media_type=result.media_type)

    return api


def answer(emulator: Emulator, req: ApiRequest) -> ApiResult:
    """Authenticate, dispatch and turn every error into REDCap's error answer."""
    try:
        return _dispatch(emulator, req)
    except ApiError as err:
        return ApiResult.error(err.status, err.message, req.return_format)
    except Exception as err:  # a bug in the emulator: answer like a failing REDCap would
        log.exception("REDCap emulator failed on content=%s", req.content)
        return ApiResult.error(500, f"Internal error in the REDCap emulator: {err}",
                               req.return_format)


def _dispatch(emulator: Emulator, req: ApiRequest) -> ApiResult:
    project_id, username, is_super = emulator.authenticate(req.get("token"))
    content = req.content
    if not content:
        raise ApiError(400, 'The parameter "content" is missing')
    if content == "version":
        return ApiResult.text(emulator.config.redcap_version)
    if is_super:
        if content == "project" and "data" in req.scalars:
            return _create_project(emulator, req, username)
        raise ApiError(403, "A super API token can only be used to create projects")
    if project_id is None:
        raise ApiError(403, "You do not have permissions to use the API")
    ctx = emulator.context(project_id, username)
    if content == "project_xml":
        return _project_xml(ctx, req)
    table = _table_for(content, req)
    handler = table.get(content)
    if handler is None:
        raise ApiError(400, 'The value of the parameter "content" is not valid')
    if req.get("format") and req.get("format").lower() not in FORMATS:
        raise ApiError(400, 'The value of the parameter "format" is not valid')
    return handler(ctx, req)


def _table_for(content: str, req: ApiRequest) -> dict[str, Handler]:
    action = req.get("action").lower()
    if action == "delete":
        return DELETES
    if action == "import" or ("data" in req.scalars and content in IMPORTS):
        return IMPORTS
    return EXPORTS


def _create_project(emulator: Emulator, req: ApiRequest, username: str) -> ApiResult:
    """content=project with a super token: `data` holds the attributes, `odm` optionally the XML."""
    try:
        attrs = parse_rows(req.scalars["data"], req.format)
    except ImportFormatError as err:
        raise ApiError(400, str(err)) from None
    if len(attrs) != 1 or not attrs[0].get("project_title") or attrs[0].get("purpose", "") == "":
        raise ApiError(400, "The data must hold one project with project_title and purpose")
    a = attrs[0]
    settings = {"purpose": int(a["purpose"]) if a["purpose"].isdigit() else a["purpose"],
                "purpose_other": a.get("purpose_other", ""),
                "project_notes": a.get("project_notes", "")}
    if a.get("record_autonumbering_enabled"):
        settings["record_autonumbering_enabled"] = int(a["record_autonumbering_enabled"] == "1")
    odm = req.scalars.get("odm", "").strip()
    try:
        if odm:
            _, token = emulator.create_from_odm(odm, title=a["project_title"], username=username,
                                                settings=settings)
        else:
            _, token = emulator.create_empty(a["project_title"], username=username,
                                             longitudinal=a.get("is_longitudinal") == "1",
                                             settings=settings)
    except DesignError as err:
        raise ApiError(400, str(err)) from None
    return ApiResult.text(token)


def _project_xml(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    metadata_only = req.flag("returnMetadataOnly")
    data = None
    if not metadata_only:
        records = req.list("records") or None
        data = ctx.store.data(ctx.pid, records)
    body = project_xml(ctx.project.title, ctx.design, ctx.project.settings,
                       version=ctx.config.redcap_version, created=ctx.store.now(), data=data)
    return ApiResult.data(body, "xml")
