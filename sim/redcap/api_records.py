"""content=record (export, import, delete) and content=generateNextRecordName."""

from __future__ import annotations

from .api_result import ApiResult
from .context import ProjectContext
from .formats import (
    ImportFormatError,
    parse_rows,
    render_count,
    render_ids,
    render_rows,
)
from .layout import complete_field, sort_records
from .params import ApiError, ApiRequest
from .records_export import export_records, header_labels
from .records_import import PlannedRow, apply_rows, eav_to_flat, next_record_name, plan_rows
from .users import require


def record_export(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    rows, columns = export_records(ctx, req)
    ctx.store.log(ctx.pid, ctx.username, "export", "Data export (API)",
                  details=f"Export data (API), {len(rows)} row(s)")
    header = None
    if req.format == "csv" and req.get("rawOrLabelHeaders") == "label" and columns:
        header = header_labels(ctx.design, columns)  # REDCap labels CSV headers only
    return ApiResult.data(render_rows(rows, req.format, columns or None, header=header),
                          req.format)


def record_import(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    overwrite = req.get("overwriteBehavior", "normal") or "normal"
    if overwrite not in ("normal", "overwrite"):
        raise ApiError(400, 'The value of the parameter "overwriteBehavior" is not valid')
    returns = req.get("returnContent", "count") or "count"
    if returns not in ("count", "ids", "auto_ids", "nothing"):
        raise ApiError(400, 'The value of the parameter "returnContent" is not valid')
    date_format = (req.get("dateFormat", "YMD") or "YMD").upper()
    if date_format not in ("YMD", "MDY", "DMY"):
        raise ApiError(400, 'The value of the parameter "dateFormat" is not valid')
    if "data" not in req.scalars:
        raise ApiError(400, 'The parameter "data" is missing')
    try:
        rows = parse_rows(req.scalars["data"], req.format)
    except ImportFormatError as err:
        raise ApiError(400, str(err)) from None
    if req.get("type", "flat") == "eav":
        rows = eav_to_flat(ctx.design, rows)
    planned = plan_rows(ctx.design, rows, date_format=date_format, now=ctx.store.clock)
    _keep_to_callers_dag(ctx, planned)
    force_auto = req.flag("forceAutoNumber") and bool(
        ctx.project.settings.get("record_autonumbering_enabled", 1))
    outcome = apply_rows(ctx, planned, overwrite=overwrite == "overwrite", force_auto=force_auto)
    fmt = req.return_format
    if returns == "nothing":
        return ApiResult.data("", fmt)
    if returns == "ids":
        return ApiResult.data(render_ids(outcome.ids, fmt), fmt)
    if returns == "auto_ids":
        return ApiResult.data(render_ids(outcome.auto_ids, fmt), fmt)
    return ApiResult.data(render_count(len(outcome.ids), fmt), fmt)


def _keep_to_callers_dag(ctx: ProjectContext, planned: list[PlannedRow]) -> None:
    """A user in a DAG imports only into that group: new records join it, others are refused."""
    dag = ctx.user_dag()
    if not dag:
        return
    dags = {r.record: r.dag for r in ctx.store.records(ctx.pid)}
    problems = [f'"{p.record}","redcap_data_access_group","{p.dag}","You are in the data '
                f"access group '{dag}' and may not assign records to another group.\""
                for p in planned if p.dag and p.dag != dag]
    problems += [f'"{p.record}","{ctx.design.record_id_field}","{p.record}","The record exists '
                 'in another data access group than yours."'
                 for p in planned if p.record in dags and dags[p.record] != dag]
    if problems:
        raise ApiError(400, "\n".join(dict.fromkeys(problems)))
    for p in planned:
        p.dag = dag


def record_delete(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    design, store = ctx.design, ctx.store
    require(ctx.rights(), "record_delete", "Delete Record")
    records = req.list("records")
    if not records:
        raise ApiError(400, "You must provide the records to delete (records)")
    existing = {r.record for r in store.records(ctx.pid)}
    missing = [r for r in records if r not in existing]
    if missing:
        raise ApiError(400, "One or more of the records provided cannot be deleted because they "
                       "do not exist in the project. The following records do not exist: "
                       + ", ".join(missing))
    instrument, event = req.get("instrument"), req.get("event")
    if instrument and instrument not in design.forms:
        raise ApiError(400, f"The instrument '{instrument}' does not exist in the project")
    if event and event not in design.event_names():
        raise ApiError(400, f"The event '{event}' is not a valid unique event name")
    if instrument and design.longitudinal and not event:
        raise ApiError(400, "The event parameter is required when deleting an instrument's data "
                       "in a longitudinal project")
    instance = int(req.get("repeat_instance")) if req.get("repeat_instance").isdigit() else None
    arm = int(req.get("arm")) if req.get("arm").isdigit() else None
    with store.transaction():
        for record in records:
            _delete_one(ctx, record, instrument, event, instance, arm)
    return ApiResult.data(str(len(records)), req.return_format)


def _delete_one(ctx: ProjectContext, record: str, instrument: str, event: str,
                instance: int | None, arm: int | None) -> None:
    design, store = ctx.design, ctx.store
    if instrument or event:
        fields = None
        if instrument:
            fields = [n for f in design.fields_of(instrument) for n in f.export_names()
                      if f.field_name != design.record_id_field] + [complete_field(instrument)]
        for ev in [event] if event else design.event_names():
            store.delete_data(ctx.pid, record, event=ev, fields=fields, instance=instance)
        what = f"instrument '{instrument}'" if instrument else f"event '{event}'"
        store.log(ctx.pid, ctx.username, "record_edit", f"Delete record data (API) {record}",
                  record=record, event=event, details=f"Deleted the data of {what}"
                  + (f" [instance = {instance}]" if instance else ""))
        return
    events = [e.unique_event_name for e in design.events if arm is None or e.arm_num == arm]
    for ev in events or design.event_names():
        store.delete_data(ctx.pid, record, event=ev)
    store.delete_record(ctx.pid, record, arm)
    store.log(ctx.pid, ctx.username, "record_delete", f"Delete record (API) {record}",
              record=record, details=f"{design.record_id_field} = '{record}'")


def generate_next_record_name(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """A user in a DAG gets REDCap's group-prefixed name: `<group id>-<n>`."""
    existing = sort_records(r.record for r in ctx.store.records(ctx.pid))
    dag = ctx.user_dag()
    if not dag:
        return ApiResult.text(next_record_name(existing))
    group_id = 1000 + list(ctx.design.dag_unique_names()).index(dag)
    prefix = f"{group_id}-"
    suffixes = [r[len(prefix):] for r in existing if r.startswith(prefix)]
    return ApiResult.text(prefix + next_record_name(suffixes))
