"""content=report (a report defined in the project) and content=pdf (instruments as PDF)."""

from __future__ import annotations

from dataclasses import replace

from .api_result import ApiResult
from .context import ProjectContext
from .formats import render_rows
from .params import ApiError, ApiRequest
from .pdf import text_pdf
from .records_export import allowed_columns, export_records

KIND = "report"


def export_report(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """The report's fields and filter, exported flat with the caller's rights (REDCap
    ignores `type` here); the report's own definition wins over request filters."""
    report_id = req.get("report_id")
    report = ctx.store.get_object(ctx.pid, KIND, report_id) if report_id else None
    if report is None:
        raise ApiError(400, 'The value of the parameter "report_id" is not valid')
    scalars = {k: v for k, v in req.scalars.items()
               if k in ("rawOrLabel", "rawOrLabelHeaders", "exportCheckboxLabel", "format",
                        "returnFormat", "csvDelimiter", "decimalCharacter")}
    scalars["filterLogic"] = report.get("filter_logic", "")
    lists = {"fields": list(report.get("fields", [])), "events": list(report.get("events", []))}
    rows, columns = export_records(ctx, replace(req, scalars=scalars, lists=lists))
    ctx.store.log(ctx.pid, ctx.username, "export", "Data export (API)",
                  details=f"Export report {report_id} (API), {len(rows)} row(s)")
    return ApiResult.data(render_rows(rows, req.format, columns or None), req.format)


def export_pdf(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """The instruments (blank, one record's, or all records') as a text PDF."""
    design = ctx.design
    instrument, record, event = req.get("instrument"), req.get("record"), req.get("event")
    if instrument and instrument not in design.forms:
        raise ApiError(400, f"The instrument '{instrument}' does not exist in the project")
    if event and event not in design.event_names():
        raise ApiError(400, f"The event '{event}' is not a valid unique event name")
    known = [r.record for r in ctx.store.records(ctx.pid)
             if not ctx.user_dag() or r.dag == ctx.user_dag()]
    if record and record not in known:
        raise ApiError(400, f"The record '{record}' does not exist")
    records = known if req.flag("allRecords") else [record] if record else [""]
    visible = set(allowed_columns(design, ctx.rights(), [
        n for f in design.fields for n in (f.export_names() or [f.field_name])]))
    data = ctx.store.data(ctx.pid)
    lines = [ctx.project.title, ""]
    for rec in records:
        for ev in ([event] if event else design.event_names()):
            for form in design.forms_in_event(ev):
                if instrument and form != instrument:
                    continue
                values = data.get((rec, ev, "", 1), {}) if rec else {}
                lines.append(f"{design.form_label(form)}" + (f" - record {rec} ({ev})" if rec else ""))
                for f in design.fields_of(form):
                    if f.field_name in visible or any(n in visible for n in f.export_names()):
                        value = values.get(f.field_name, "") if f.field_type != "checkbox" else ", ".join(
                            label for code, label in f.choices
                            if values.get(f"{f.field_name}___{code.lower()}") == "1")
                        lines.append(f"  {f.field_label or f.field_name}: {value}")
                lines.append("")
    ctx.store.log(ctx.pid, ctx.username, "export", "Download PDF (API)",
                  record=record, details=f"instrument = '{instrument}'")
    name = (record or "blank") + ".pdf"
    return ApiResult.file(text_pdf(lines), name, "application/pdf")
