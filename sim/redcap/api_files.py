"""content=file (a record's file upload field) and content=fileRepository.

Files are project objects of kind "file" (name, type, base64 content); a file field's
stored value is the file's doc_id, exported as "[document]" like REDCap does. Repository
folders are objects of kind "folder"; a repository file names its folder.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .api_result import ApiResult
from .context import ProjectContext
from .formats import render_rows
from .layout import complete_field
from .params import ApiError, ApiRequest
from .store import RowKey
from .users import require

MAX_FILE_BYTES = 16 * 1024 * 1024


def _next_id(ctx: ProjectContext, kind: str) -> int:
    return 1 + max((int(k) for k in ctx.store.object_keys(ctx.pid, kind)), default=0)


def _store_file(ctx: ProjectContext, req: ApiRequest, **extra: Any) -> int:
    if "file" not in req.files:
        raise ApiError(400, 'The parameter "file" is missing (a multipart file upload)')
    name, content, mime = req.files["file"]
    if len(content) > MAX_FILE_BYTES:
        raise ApiError(400, f"The file is larger than the emulator's limit of "
                       f"{MAX_FILE_BYTES // (1024 * 1024)} MB")
    doc_id = _next_id(ctx, "file")
    ctx.store.put_object(ctx.pid, "file", str(doc_id), {
        "name": name, "mime": mime, "size": len(content),
        "content": base64.b64encode(content).decode("ascii"), **extra})
    return doc_id


def _file_result(ctx: ProjectContext, doc_id: str) -> ApiResult:
    stored = ctx.store.get_object(ctx.pid, "file", doc_id)
    if stored is None:
        raise ApiError(400, f"The file with doc_id '{doc_id}' does not exist")
    return ApiResult.file(base64.b64decode(stored["content"]), stored["name"], stored["mime"])


# ---- file upload fields -------------------------------------------------------------------
def _file_place(ctx: ProjectContext, req: ApiRequest) -> tuple[RowKey, str]:
    design = ctx.design
    record, name = req.get("record"), req.get("field")
    f = design.field_by_name().get(name)
    if f is None:
        raise ApiError(400, f"The field '{name}' does not exist in the project")
    if f.field_type != "file":
        raise ApiError(400, f"The field '{name}' is not a file upload field")
    if record not in {r.record for r in ctx.store.records(ctx.pid)}:
        raise ApiError(400, f"The record '{record}' does not exist")
    event = req.get("event") or ("" if design.longitudinal else design.event_names()[0])
    if event not in design.event_names():
        raise ApiError(400, 'The parameter "event" is missing or is not a valid unique event name')
    if f.form_name not in design.forms_in_event(event):
        raise ApiError(400, f"The field '{name}' is not on an instrument of the event '{event}'")
    repeating = design.is_repeating_form(event, f.form_name)
    instance = req.get("repeat_instance", "1") or "1"
    if not instance.isdigit() or int(instance) < 1:
        raise ApiError(400, 'The value of the parameter "repeat_instance" is not valid')
    return (record, event, f.form_name if repeating else "", int(instance)), name


def export_file(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    key, name = _file_place(ctx, req)
    doc_id = ctx.store.data(ctx.pid, [key[0]]).get(key, {}).get(name)
    if not doc_id:
        raise ApiError(400, "There is no file to download for this record")
    return _file_result(ctx, doc_id)


def import_file(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    key, name = _file_place(ctx, req)
    form = ctx.design.field_by_name()[name].form_name
    with ctx.store.transaction():
        stored = ctx.store.data(ctx.pid, [key[0]]).get(key, {})
        doc_id = _store_file(ctx, req, field=name)
        ctx.store.put_value(ctx.pid, key, name, str(doc_id))
        if not stored.get(complete_field(form)):
            ctx.store.put_value(ctx.pid, key, complete_field(form), "0")
        ctx.store.log(ctx.pid, ctx.username, "record_edit", f"Upload document (API) {key[0]}",
                      record=key[0], event=key[1], details=f"{name} = '{doc_id}'")
    return ApiResult.data("", req.return_format)


def delete_file(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    key, name = _file_place(ctx, req)
    doc_id = ctx.store.data(ctx.pid, [key[0]]).get(key, {}).get(name)
    if not doc_id:
        raise ApiError(400, "There is no file to delete for this record")
    with ctx.store.transaction():
        ctx.store.put_value(ctx.pid, key, name, "")
        ctx.store.delete_object(ctx.pid, "file", doc_id)
        ctx.store.log(ctx.pid, ctx.username, "record_edit", f"Delete document (API) {key[0]}",
                      record=key[0], event=key[1], details=f"{name} = ''")
    return ApiResult.data("", req.return_format)


# ---- file repository ------------------------------------------------------------------------
def _folder(ctx: ProjectContext, req: ApiRequest) -> str:
    folder = req.get("folder_id")
    if folder and ctx.store.get_object(ctx.pid, "folder", folder) is None:
        raise ApiError(400, f"The folder_id '{folder}' does not exist")
    return folder


def _repository_right(ctx: ProjectContext) -> None:
    require(ctx.rights(), "file_repository", "File Repository")


def create_folder(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _repository_right(ctx)
    name = req.get("name")
    if not name or len(name) > 150:
        raise ApiError(400, 'The parameter "name" is missing or longer than 150 characters')
    parent = _folder(ctx, req)
    folder_id = _next_id(ctx, "folder")
    ctx.store.put_object(ctx.pid, "folder", str(folder_id), {
        "name": name, "parent": parent, "dag_id": req.get("dag_id"), "role_id": req.get("role_id")})
    return ApiResult.data(json.dumps([{"folder_id": folder_id}]) if req.format == "json"
                          else _render([{"folder_id": folder_id}], req.format), req.format)


def _render(rows: list[dict[str, Any]], fmt: str) -> str:
    return render_rows(rows, fmt)


def list_repository(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _repository_right(ctx)
    folder = _folder(ctx, req)
    rows: list[dict[str, Any]] = [
        {"folder_id": int(k), "name": v["name"]}
        for k, v in ctx.store.objects(ctx.pid, "folder").items() if v["parent"] == folder]
    rows += [{"doc_id": int(k), "name": v["name"]}
             for k, v in ctx.store.objects(ctx.pid, "file").items()
             if "repository" in v and v["repository"] == folder]
    if req.format == "json":
        return ApiResult.data(json.dumps(rows), "json")
    return ApiResult.data(_render([{"folder_id": r.get("folder_id", ""),
                                    "doc_id": r.get("doc_id", ""), "name": r["name"]}
                                   for r in rows], req.format), req.format)


def import_into_repository(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _repository_right(ctx)
    folder = _folder(ctx, req)
    with ctx.store.transaction():
        doc_id = _store_file(ctx, req, repository=folder)
        ctx.store.log(ctx.pid, ctx.username, "manage", "Upload file to File Repository (API)",
                      details=f"doc_id = {doc_id}")
    return ApiResult.data("", req.return_format)


def _repository_doc(ctx: ProjectContext, req: ApiRequest) -> str:
    doc_id = req.get("doc_id")
    stored = ctx.store.get_object(ctx.pid, "file", doc_id) if doc_id else None
    if stored is None or "repository" not in stored:
        raise ApiError(400, f"The doc_id '{doc_id}' is not a file in the File Repository")
    return doc_id


def export_from_repository(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _repository_right(ctx)
    return _file_result(ctx, _repository_doc(ctx, req))


def delete_from_repository(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _repository_right(ctx)
    doc_id = _repository_doc(ctx, req)
    with ctx.store.transaction():
        ctx.store.delete_object(ctx.pid, "file", doc_id)
        ctx.store.log(ctx.pid, ctx.username, "manage", "Delete file from File Repository (API)",
                      details=f"doc_id = {doc_id}")
    return ApiResult.data("", req.return_format)
