"""A person saving one instrument in REDCap's data entry page.

Unlike an API import, a save through the user interface: may only touch the fields of
that instrument, cannot change @READONLY fields, sets the form status, is logged
under the person's user name and fires the project's Data Entry Trigger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .context import ProjectContext
from .det import det_payload, fire_det
from .layout import complete_field
from .params import ApiError
from .records_import import apply_rows, next_record_name, plan_rows
from .users import effective_rights, get_user


@dataclass
class FormSave:
    instrument: str
    values: dict[str, str] = field(default_factory=dict)
    record: str | None = None  # None: the next auto-number, like "Add new record"
    event: str | None = None  # None: the first event the instrument is designated for
    repeat_instance: int | str | None = None  # None or "new": a new instance of a repeating form
    complete: str = "2"
    dag: str = ""
    fire_det: bool = True


@dataclass
class SaveOutcome:
    record: str
    event: str
    instrument: str
    repeat_instance: int
    det: dict[str, Any] | None


def save_form(ctx: ProjectContext, save: FormSave, *, redcap_url: str) -> SaveOutcome:
    """Store the values (validated), mark the form status, log it, then fire the DET once."""
    design = ctx.design
    form = save.instrument
    if form not in design.forms:
        raise ApiError(400, f"The instrument '{form}' does not exist in the project")
    event = save.event or next((e for e in design.event_names() if form in
                                design.forms_in_event(e)), "")
    if form not in design.forms_in_event(event):
        raise ApiError(400, f"The instrument '{form}' is not designated for event '{event}'")
    _check_fields(ctx, form, save.values)
    _check_edit_right(ctx, form)
    existing = [r.record for r in ctx.store.records(ctx.pid)]
    record = save.record or next_record_name(existing)
    repeating = design.is_repeating_form(event, form) or design.is_repeating_event(event)
    row = {design.record_id_field: record, **save.values, complete_field(form): save.complete}
    if design.longitudinal:
        row["redcap_event_name"] = event
    if repeating:
        row["redcap_repeat_instrument"] = form if design.is_repeating_form(event, form) else ""
        row["redcap_repeat_instance"] = str(save.repeat_instance or "new")
    if save.dag:
        row["redcap_data_access_group"] = save.dag
    planned = plan_rows(design, [row], now=ctx.store.clock)
    outcome = apply_rows(ctx, planned, overwrite=True, via="UI")
    given = str(save.repeat_instance or "1")
    instance = outcome.changed_keys[-1][3] if outcome.changed_keys else (
        int(given) if given.isdigit() else 1)
    delivery = None
    url = ctx.project.settings.get("det_url")
    if save.fire_det and url:
        dag = next((r.dag for r in ctx.store.records(ctx.pid) if r.record == record), "")
        payload = det_payload(ctx, instrument=form, record=record, event=event,
                              repeat_instance=instance, complete=save.complete, dag=dag,
                              username=ctx.username, redcap_url=redcap_url)
        delivery = fire_det(ctx, str(url), payload)
    return SaveOutcome(record, event, form, instance, delivery)


def _check_edit_right(ctx: ProjectContext, form: str) -> None:
    """A project user saves only instruments it may edit (view & edit, or edit survey
    responses); a name that is not a project user plays an unrestricted person."""
    user = get_user(ctx.store, ctx.pid, ctx.username)
    if user is None:
        return
    if effective_rights(ctx.design, user)["forms"].get(form, 0) not in (1, 3):
        raise ApiError(403, f"The user '{ctx.username}' may not edit the instrument '{form}'")


def _check_fields(ctx: ProjectContext, form: str, values: dict[str, str]) -> None:
    design = ctx.design
    owner = {n: f for f in design.fields for n in f.export_names()}
    problems: list[str] = []
    for name in values:
        f = owner.get(name)
        if f is None or f.form_name != form or name == design.record_id_field:
            problems.append(f"'{name}' is not a field of the instrument '{form}'")
        elif "@READONLY" in f.action_tags():
            problems.append(f"'{name}' is read-only (@READONLY) on the data entry page")
    if problems:
        raise ApiError(400, "; ".join(problems))
