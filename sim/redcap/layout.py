"""Where each value lives in a flat export: the columns and which rows a form belongs to."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .design import FieldDef, ProjectDesign
from .params import ApiError

KEY_COLUMNS = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance")
# export column -> (form, field definition; None for `<form>_complete`)
Owners = dict[str, tuple[str, FieldDef | None]]


def complete_field(form: str) -> str:
    return f"{form}_complete"


def value_columns(design: ProjectDesign) -> list[str]:
    """All value columns in export order: each form's fields, then `<form>_complete`."""
    cols: list[str] = []
    for form in design.forms:
        for f in design.fields_of(form):
            cols += f.export_names()
        cols.append(complete_field(form))
    return cols


def column_owner(design: ProjectDesign) -> Owners:
    """Which form and field each export column belongs to."""
    owner: Owners = {}
    for f in design.fields:
        for name in f.export_names():
            owner[name] = (f.form_name, f)
    for form in design.forms:
        owner[complete_field(form)] = (form, None)
    return owner


def select_columns(design: ProjectDesign, fields: list[str], forms: list[str]) -> list[str]:
    """The value columns an export asks for; the record ID always comes first."""
    all_cols = value_columns(design)
    if not fields and not forms:
        return all_cols
    by_name = design.field_by_name()
    bad_forms = [f for f in forms if f not in design.forms]
    if bad_forms:
        raise ApiError(400, 'The following values in the parameter "forms" are not valid: '
                       + ", ".join(f"'{f}'" for f in bad_forms))
    wanted: set[str] = {design.record_id_field}
    owner = column_owner(design)
    bad: list[str] = []
    for name in fields:
        if name in by_name:
            wanted.update(by_name[name].export_names())
        elif name in owner:
            wanted.add(name)
        else:
            bad.append(name)
    if bad:
        raise ApiError(400, 'The following values in the parameter "fields" are not valid: '
                       + ", ".join(f"'{b}'" for b in bad))
    for form in forms:
        for f in design.fields_of(form):
            wanted.update(f.export_names())
        wanted.add(complete_field(form))
    return [c for c in all_cols if c in wanted]


def form_applies(design: ProjectDesign, form: str, event: str, repeat_instrument: str) -> bool:
    """Does `form` have a place in the row (event, repeating instrument)?"""
    if form not in design.forms_in_event(event):
        return False
    if repeat_instrument:
        return form == repeat_instrument
    if design.is_repeating_event(event):
        return True
    return not design.is_repeating_form(event, form)


def natural_key(record: str) -> tuple[tuple[int, object], ...]:
    """Record names sort numerically where numeric (2 before 10), as REDCap lists them."""
    return tuple((0, int(p)) if p.isdigit() else (1, p)
                 for p in re.split(r"(\d+)", record) if p != "")


def sort_records(records: Iterable[str]) -> list[str]:
    return sorted(set(records), key=natural_key)
