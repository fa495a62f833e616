"""Changing a project's design through the API: metadata, arms, events, mappings, repeating.

Each import is checked as REDCap checks an upload; a refused import changes nothing.
REDCap allows these only while a project is in development status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .api_result import ApiResult
from .checks import DesignError, check_design
from .context import ProjectContext
from .design import EventDef, ProjectDesign
from .dictionary import (
    arms_from_rows,
    events_from_rows,
    fields_from_rows,
    mapping_from_rows,
    repeating_from_rows,
)
from .formats import ImportFormatError, parse_rows
from .params import ApiError, ApiRequest
from .users import require


def _rows(req: ApiRequest) -> list[dict[str, str]]:
    if "data" not in req.scalars:
        raise ApiError(400, 'The parameter "data" is missing')
    try:
        return parse_rows(req.scalars["data"], req.format)
    except ImportFormatError as err:
        raise ApiError(400, str(err)) from None


def _change(ctx: ProjectContext, req: ApiRequest, what: str,
            change: Callable[[ProjectDesign, list[dict[str, str]]], ProjectDesign]) -> ApiResult:
    require(ctx.rights(), "design", "Project Design and Setup")
    if ctx.project.settings.get("in_production"):
        raise ApiError(400, f"{what} can only be imported while the project is in development")
    rows = _rows(req)
    try:  # one transaction: a refused design also keeps the data an override would drop
        with ctx.store.transaction():
            design = change(ctx.design, rows)
            check_design(design)
            ctx.store.save_design(ctx.pid, design)
            ctx.store.log(ctx.pid, ctx.username, "manage", "Manage/Design",
                          details=f"Import {what} (API), {len(rows)} row(s)")
    except DesignError as err:
        raise ApiError(400, str(err)) from None
    return ApiResult.data(str(len(rows)), req.return_format)


def import_metadata(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    def change(design: ProjectDesign, rows: list[dict[str, str]]) -> ProjectDesign:
        fields = fields_from_rows(rows)
        forms = {f.form_name for f in fields}
        mapping = {e: [f for f in fs if f in forms] for e, fs in design.mapping.items()}
        repeating = {e: {f: lbl for f, lbl in r.items() if f == "" or f in forms}
                     for e, r in design.repeating.items()}
        return replace(design, fields=fields, mapping=mapping, repeating=repeating)
    return _change(ctx, req, "data dictionary", change)


def import_arms(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """override=1 is REDCap's "delete all, then import": every event and mapping goes too."""
    override = req.get("override") == "1"

    def change(design: ProjectDesign, rows: list[dict[str, str]]) -> ProjectDesign:
        arms = {a.arm_num: a for a in ([] if override else design.arms)}
        arms.update({a.arm_num: a for a in arms_from_rows(rows)})
        if override:
            design = _drop_events(ctx, design, {e.unique_event_name for e in design.events})
        return replace(design, arms=sorted(arms.values(), key=lambda a: a.arm_num))
    return _change(ctx, req, "arms", change)


def import_events(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """New events are added (their unique name generated); a row naming an existing unique
    event name renames it; override=1 replaces every event (and their data and mappings)."""
    override = req.get("override") == "1"

    def change(design: ProjectDesign, rows: list[dict[str, str]]) -> ProjectDesign:
        if override:
            design = _drop_events(ctx, design, {e.unique_event_name for e in design.events})
        existing = design.event_by_name()
        renamed = {r["unique_event_name"]: r for r in rows
                   if r.get("unique_event_name") in existing}
        fresh = [{k: v for k, v in r.items() if k != "unique_event_name"} for r in rows
                 if r.get("unique_event_name") not in existing]
        kept = [_renamed(e, renamed[e.unique_event_name]) if e.unique_event_name in renamed
                else e for e in design.events]
        new = events_from_rows(fresh, start_id=1 + max((e.event_id for e in design.events),
                                                       default=0),
                               taken=[e.unique_event_name for e in kept])
        return replace(design, events=kept + new)
    return _change(ctx, req, "events", change)


def _renamed(event: EventDef, row: dict[str, str]) -> EventDef:
    def number(*keys: str, default: int) -> int:
        raw = next((row[k] for k in keys if str(row.get(k, "")).strip() != ""), None)
        try:
            return int(float(raw)) if raw is not None else default
        except ValueError:
            raise DesignError([f"events: {keys[0]} {raw!r} is not a whole number"]) from None
    return replace(event, event_name=row.get("event_name") or event.event_name,
                   day_offset=number("day_offset", "days_offset", default=event.day_offset),
                   offset_min=number("offset_min", default=event.offset_min),
                   offset_max=number("offset_max", default=event.offset_max),
                   custom_event_label=row.get("custom_event_label", event.custom_event_label))


def import_mapping(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """The rows become the whole designation, as REDCap's import replaces every arm's; a
    form no longer designated for an event stops repeating there."""
    def change(design: ProjectDesign, rows: list[dict[str, str]]) -> ProjectDesign:
        mapping = mapping_from_rows(rows)
        repeating = {e: kept for e, r in design.repeating.items()
                     if (kept := {f: lbl for f, lbl in r.items()
                                  if f == "" or f in mapping.get(e, [])})}
        return replace(design, mapping=mapping, repeating=repeating)
    return _change(ctx, req, "instrument-event mappings", change)


def import_repeating(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    def change(design: ProjectDesign, rows: list[dict[str, str]]) -> ProjectDesign:
        if not design.longitudinal:
            rows = [{**r, "event_name": design.event_names()[0]} for r in rows]
        return replace(design, repeating=repeating_from_rows(rows))
    return _change(ctx, req, "repeating instruments and events", change)


def _drop_events(ctx: ProjectContext, design: ProjectDesign, gone: set[str]) -> ProjectDesign:
    """The design without events `gone`; their data is deleted, as REDCap does."""
    for record in ctx.store.records(ctx.pid):
        for event in gone:
            ctx.store.delete_data(ctx.pid, record.record, event=event)
    return replace(design, events=[e for e in design.events if e.unique_event_name not in gone],
                   mapping={k: v for k, v in design.mapping.items() if k not in gone},
                   repeating={k: v for k, v in design.repeating.items() if k not in gone})


def _delete(ctx: ProjectContext, req: ApiRequest, what: str, names: list[str],
            change: Callable[[ProjectDesign], ProjectDesign]) -> ApiResult:
    require(ctx.rights(), "design", "Project Design and Setup")
    if ctx.project.settings.get("in_production"):
        raise ApiError(400, f"{what} can only be deleted while the project is in development")
    if not ctx.design.longitudinal:
        raise ApiError(400, f"You cannot delete {what} in a classic project")
    if not names:
        raise ApiError(400, f'The parameter "{what}" is missing')
    try:
        with ctx.store.transaction():
            design = change(ctx.design)
            check_design(design)
            ctx.store.save_design(ctx.pid, design)
            ctx.store.log(ctx.pid, ctx.username, "manage", "Manage/Design",
                          details=f"Delete {what} (API): " + ", ".join(names))
    except DesignError as err:
        raise ApiError(400, str(err)) from None
    return ApiResult.data(str(len(names)), req.return_format)


def delete_arms(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    names = req.list("arms")
    known = {str(a.arm_num) for a in ctx.design.arms}
    bad = [a for a in names if a not in known]
    if bad:
        raise ApiError(400, 'The following values in the parameter "arms" are not valid: '
                       + ", ".join(f"'{a}'" for a in bad))
    arms = {int(a) for a in names}

    def change(design: ProjectDesign) -> ProjectDesign:
        gone = {e.unique_event_name for e in design.events if e.arm_num in arms}
        for record in ctx.store.records(ctx.pid):
            if record.arm_num in arms:
                ctx.store.delete_record(ctx.pid, record.record, record.arm_num)
        return replace(_drop_events(ctx, design, gone),
                       arms=[a for a in design.arms if a.arm_num not in arms])
    return _delete(ctx, req, "arms", names, change)


def delete_events(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    names = req.list("events")
    bad = [e for e in names if e not in ctx.design.event_by_name()]
    if bad:
        raise ApiError(400, 'The following values in the parameter "events" are not valid: '
                       + ", ".join(f"'{e}'" for e in bad))
    return _delete(ctx, req, "events", names,
                   lambda design: _drop_events(ctx, design, set(names)))
