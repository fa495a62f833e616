"""Read-only project contents: version, project info, metadata, instruments, events, arms,
form-event mapping, repeating setup, export field names and the log."""

from __future__ import annotations

from typing import Any

from .api_result import ApiResult
from .context import ProjectContext
from .formats import render_object, render_rows
from .layout import complete_field
from .params import ApiError, ApiRequest

LOG_KINDS = {
    "export": {"export"}, "manage": {"manage"}, "user": {"user"},
    "record": {"record_add", "record_edit", "record_delete"}, "record_add": {"record_add"},
    "record_edit": {"record_edit"}, "record_delete": {"record_delete"},
    "lock_record": {"lock_record"}, "page_view": {"page_view"},
}


def _rows(rows: list[dict[str, Any]], req: ApiRequest, columns: list[str]) -> ApiResult:
    return ApiResult.data(render_rows(rows, req.format, columns), req.format)


def _longitudinal_only(ctx: ProjectContext, what: str) -> None:
    if not ctx.design.longitudinal:
        raise ApiError(400, f"You cannot export {what} for classic projects")


def project_info(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    s, design = ctx.project.settings, ctx.design
    info: dict[str, Any] = {
        "project_id": ctx.pid, "project_title": ctx.project.title,
        "creation_time": ctx.project.created_at, "production_time": s.get("production_time", ""),
        "in_production": int(s.get("in_production", 0)), "project_language": "English",
        "purpose": int(s.get("purpose", 0)), "purpose_other": s.get("purpose_other", ""),
        "project_notes": s.get("project_notes", ""), "custom_record_label": "",
        "secondary_unique_field": "", "is_longitudinal": int(design.longitudinal),
        "has_repeating_instruments_or_events": int(design.has_repeating()),
        "surveys_enabled": int(bool(design.surveys)), "scheduling_enabled": 0,
        "record_autonumbering_enabled": int(s.get("record_autonumbering_enabled", 1)),
        "randomization_enabled": 0, "ddp_enabled": 0, "project_irb_number": "",
        "project_grant_number": "", "project_pi_firstname": "", "project_pi_lastname": "",
        "display_today_now_button": 1, "missing_data_codes": "", "external_modules": "",
        "bypass_branching_erase_field_prompt": 0,
    }
    return ApiResult.data(render_object(info, req.format, root="project"), req.format)


def metadata(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    design = ctx.design
    fields, forms = req.list("fields"), req.list("forms")
    by_name = design.field_by_name()
    bad = [f for f in fields if f not in by_name] + [f for f in forms if f not in design.forms]
    if bad:
        raise ApiError(400, "The following values in the parameter \"fields\" or \"forms\" are "
                       "not valid: " + ", ".join(f"'{b}'" for b in bad))
    chosen = [f for f in design.fields if (not fields and not forms)
              or f.field_name in fields or f.form_name in forms]
    rows = [f.as_row() for f in chosen]
    return _rows(rows, req, list(rows[0]) if rows else [])


def instruments(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    rows = [{"instrument_name": f, "instrument_label": ctx.design.form_label(f)}
            for f in ctx.design.forms]
    return _rows(rows, req, ["instrument_name", "instrument_label"])


def events(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _longitudinal_only(ctx, "events")
    arms = {int(a) for a in req.list("arms") if a.isdigit()}
    rows = [{"event_name": e.event_name, "arm_num": e.arm_num,
             "unique_event_name": e.unique_event_name, "custom_event_label": e.custom_event_label,
             "event_id": e.event_id, "days_offset": e.day_offset, "offset_min": e.offset_min,
             "offset_max": e.offset_max}
            for e in ctx.design.events if not arms or e.arm_num in arms]
    return _rows(rows, req, ["event_name", "arm_num", "unique_event_name", "custom_event_label",
                             "event_id", "days_offset", "offset_min", "offset_max"])


def arms(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _longitudinal_only(ctx, "arms")
    wanted = {int(a) for a in req.list("arms") if a.isdigit()}
    with_events = {e.arm_num for e in ctx.design.events}
    # REDCap lists an arm only once it has an event
    rows = [{"arm_num": a.arm_num, "name": a.name} for a in ctx.design.arms
            if (not wanted or a.arm_num in wanted) and a.arm_num in with_events]
    return _rows(rows, req, ["arm_num", "name"])


def form_event_mapping(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _longitudinal_only(ctx, "form/event mappings")
    wanted = {int(a) for a in req.list("arms") if a.isdigit()}
    rows = [{"arm_num": e.arm_num, "unique_event_name": e.unique_event_name, "form": form}
            for e in ctx.design.events if not wanted or e.arm_num in wanted
            for form in ctx.design.mapping.get(e.unique_event_name, [])]
    return _rows(rows, req, ["arm_num", "unique_event_name", "form"])


def repeating_forms_events(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    design = ctx.design
    rows: list[dict[str, Any]] = []
    for event in design.event_names():
        for form, label in design.repeating.get(event, {}).items():
            row = {"event_name": event, "form_name": form, "custom_form_label": label}
            if not design.longitudinal:
                del row["event_name"]
            rows.append(row)
    cols = ["event_name", "form_name", "custom_form_label"]
    return _rows(rows, req, cols if design.longitudinal else cols[1:])


def export_field_names(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    design = ctx.design
    only = req.get("field")
    if only and only not in design.field_by_name() and only not in {
            complete_field(f) for f in design.forms}:
        raise ApiError(400, f"The field '{only}' does not exist in the project")
    rows: list[dict[str, Any]] = []
    for form in design.forms:
        for f in design.fields_of(form):
            if f.field_type == "checkbox":
                rows += [{"original_field_name": f.field_name, "choice_value": code,
                          "export_field_name": name}
                         for (code, _), name in zip(f.choices, f.export_names(), strict=True)]
            elif f.field_type != "descriptive":
                rows.append({"original_field_name": f.field_name, "choice_value": "",
                             "export_field_name": f.field_name})
        status = complete_field(form)
        rows.append({"original_field_name": status, "choice_value": "", "export_field_name": status})
    rows = [r for r in rows if not only or r["original_field_name"] == only]
    return _rows(rows, req, ["original_field_name", "choice_value", "export_field_name"])


def log(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    logtype = req.get("logtype")
    if logtype and logtype not in LOG_KINDS:
        raise ApiError(400, 'The value of the parameter "logtype" is not valid')
    begin, end = req.get("beginTime"), req.get("endTime")
    user, record, dag = req.get("user"), req.get("record"), req.get("dag")
    rows = [{"timestamp": e["ts"][:16], "username": e["username"], "action": e["action"],
             "details": e["details"], "record": e["record"]}
            for e in ctx.store.log_entries(ctx.pid)
            if (not logtype or e["kind"] in LOG_KINDS[logtype])
            and (not user or e["username"] == user) and (not record or e["record"] == record)
            and (not dag or e["dag"] == dag)
            and (not begin or e["ts"][:16] >= begin[:16]) and (not end or e["ts"][:16] <= end[:16])]
    return _rows(rows, req, ["timestamp", "username", "action", "details", "record"])
