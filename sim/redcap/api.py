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
from starlette.datastructures import UploadFile

from . import (
    api_dags,
    api_design,
    api_files,
    api_meta,
    api_records,
    api_reports,
    api_surveys,
    api_users,
)
from .api_result import ApiResult
from .checks import DesignError
from .context import ProjectContext
from .emulator import Emulator
from .formats import FORMATS, ImportFormatError, parse_rows
from .layout import value_columns
from .odm_export import project_xml
from .params import ApiError, ApiRequest
from .records_export import allowed_columns

log = logging.getLogger("sim.redcap")
Handler = Callable[[ProjectContext, ApiRequest], ApiResult]

# (content, action) -> handler; an export needs the "API Export" right, anything else
# "API Import/Update". Contents and actions not listed are refused with REDCap's wording.
HANDLERS: dict[tuple[str, str], Handler] = {
    ("record", "export"): api_records.record_export, ("metadata", "export"): api_meta.metadata,
    ("instrument", "export"): api_meta.instruments, ("event", "export"): api_meta.events,
    ("arm", "export"): api_meta.arms, ("formEventMapping", "export"): api_meta.form_event_mapping,
    ("repeatingFormsEvents", "export"): api_meta.repeating_forms_events,
    ("exportFieldNames", "export"): api_meta.export_field_names,
    ("dag", "export"): api_dags.export_dags, ("log", "export"): api_meta.log,
    ("project", "export"): api_meta.project_info,
    ("generateNextRecordName", "export"): api_records.generate_next_record_name,
    ("user", "export"): api_users.export_users, ("userRole", "export"): api_users.export_roles,
    ("userRoleMapping", "export"): api_users.export_role_mapping,
    ("userDagMapping", "export"): api_users.export_dag_mapping,
    ("record", "import"): api_records.record_import, ("metadata", "import"): api_design.import_metadata,
    ("arm", "import"): api_design.import_arms, ("event", "import"): api_design.import_events,
    ("formEventMapping", "import"): api_design.import_mapping,
    ("repeatingFormsEvents", "import"): api_design.import_repeating,
    ("user", "import"): api_users.import_users, ("userRole", "import"): api_users.import_roles,
    ("userRoleMapping", "import"): api_users.import_role_mapping,
    ("userDagMapping", "import"): api_users.import_dag_mapping,
    ("dag", "import"): api_dags.import_dags,
    ("record", "delete"): api_records.record_delete, ("user", "delete"): api_users.delete_users,
    ("userRole", "delete"): api_users.delete_roles, ("dag", "delete"): api_dags.delete_dags,
    ("arm", "delete"): api_design.delete_arms, ("event", "delete"): api_design.delete_events,
    ("dag", "switch"): api_dags.switch_dag,
    ("surveyLink", "export"): api_surveys.survey_link,
    ("surveyQueueLink", "export"): api_surveys.survey_queue_link,
    ("surveyAccessCode", "export"): api_surveys.survey_access_code,
    ("surveyReturnCode", "export"): api_surveys.survey_return_code,
    ("participantList", "export"): api_surveys.participant_list,
    ("file", "export"): api_files.export_file, ("file", "import"): api_files.import_file,
    ("file", "delete"): api_files.delete_file,
    ("fileRepository", "createFolder"): api_files.create_folder,
    ("fileRepository", "list"): api_files.list_repository,
    ("fileRepository", "export"): api_files.export_from_repository,
    ("fileRepository", "import"): api_files.import_into_repository,
    ("fileRepository", "delete"): api_files.delete_from_repository,
    ("report", "export"): api_reports.export_report, ("pdf", "export"): api_reports.export_pdf,
}
# actions that read (need "API Export"); every other action changes the project
READING = frozenset({"export", "list"})
CONTENTS = frozenset(c for c, _ in HANDLERS) | {"project_xml", "version"}


def router(emulator: Emulator) -> APIRouter:
    api = APIRouter()

    @api.post("/api/", include_in_schema=False)
    async def redcap_api(request: Request) -> Response:
        form = await request.form()
        req = ApiRequest.from_pairs((k, v) for k, v in form.multi_items() if isinstance(v, str))
        req.base_url = emulator.config.public_url or str(request.base_url)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                req.files[key] = (value.filename or "file", await value.read(),
                                  value.content_type or "application/octet-stream")
        fault = emulator.faults.take(req.content)
        if fault is not None and fault.mode == "stall":
            await asyncio.sleep(fault.seconds)
        elif fault is not None:
            result = ApiResult.error(fault.status, "The server encountered an error processing "
                                     "your request (emulated fault).", req.return_format)
            return Response(result.body, result.status, media_type=result.media_type)
        result = await run_in_threadpool(answer, emulator, req)
        return Response(result.body, result.status, media_type=result.media_type,
                        headers=result.headers)

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
    if content not in CONTENTS:
        raise ApiError(400, 'The value of the parameter "content" is not valid')
    ctx = emulator.context(project_id, username)
    action = _action_of(content, req)
    rights = ctx.rights()
    if action in READING and not rights.get("api_export"):
        raise ApiError(403, "You do not have API Export privileges")
    if action not in READING and not rights.get("api_import"):
        raise ApiError(403, "You do not have API Import/Update privileges")
    if content == "project_xml" and action == "export":
        return _project_xml(ctx, req)
    handler = HANDLERS.get((content, action))
    if handler is None:
        raise ApiError(400, 'The value of the parameter "action" is not valid')
    if req.get("format") and req.get("format").lower() not in FORMATS:
        raise ApiError(400, 'The value of the parameter "format" is not valid')
    return handler(ctx, req)


def _action_of(content: str, req: ApiRequest) -> str:
    """REDCap infers an import from `data` where the content has one (PyCap sends no action)."""
    action = req.get("action")
    if action:
        return action
    return "import" if "data" in req.scalars and (content, "import") in HANDLERS else "export"


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
    dags = {r.record: r.dag for r in ctx.store.records(ctx.pid)}
    if not metadata_only:
        records = req.list("records") or None
        allowed = set(allowed_columns(ctx.design, ctx.rights(), value_columns(ctx.design)))
        own_dag = ctx.user_dag()
        data = {key: {c: v for c, v in values.items() if c in allowed}
                for key, values in ctx.store.data(ctx.pid, records).items()
                if not own_dag or dags.get(key[0]) == own_dag}
    body = project_xml(ctx.project.title, ctx.design, ctx.project.settings,
                       version=ctx.config.redcap_version, created=ctx.store.now(), data=data,
                       dags=dags)
    return ApiResult.data(body, "xml")
