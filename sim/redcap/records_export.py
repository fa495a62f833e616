"""content=record, action=export: flat and EAV rows, filters, labels, date range."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .context import ProjectContext
from .design import FORM_STATUS, FieldDef, ProjectDesign, checkbox_export_name
from .filter_logic import LogicError, Ref, parse, references
from .layout import Owners, column_owner, form_applies, select_columns, sort_records
from .params import ApiError, ApiRequest
from .rights import DEIDENTIFIED, IDENTIFIERS_REMOVED, NO_ACCESS
from .store import RowKey
from .values import base_validation


@dataclass(frozen=True)
class ExportOptions:
    labels: bool = False
    event_labels: bool = False
    checkbox_labels: bool = False
    blank_gray_status: bool = False
    with_dag: bool = False


def export_records(ctx: ProjectContext, req: ApiRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and their column names, as REDCap exports them for this request."""
    design = ctx.design
    _refuse_unemulated(req)
    if (req.get("rawOrLabelHeaders") or "raw") not in ("raw", "label"):
        raise ApiError(400, 'The value of the parameter "rawOrLabelHeaders" is not valid')
    raw_or_label = req.get("rawOrLabel", "raw") or "raw"
    if raw_or_label not in ("raw", "label"):
        raise ApiError(400, 'The value of the parameter "rawOrLabel" is not valid')
    event_name = req.get("eventName") or ("label" if raw_or_label == "label" else "unique")
    opts = ExportOptions(
        labels=raw_or_label == "label",
        event_labels=raw_or_label == "label" and event_name == "label",
        checkbox_labels=req.flag("exportCheckboxLabel"),
        blank_gray_status=req.flag("exportBlankForGrayFormStatus"),
        with_dag=req.flag("exportDataAccessGroups") and bool(design.dags))
    rights = ctx.rights()
    if opts.with_dag and not rights.get("data_access_groups") and not ctx.user_dag():
        raise ApiError(403, "Insufficient user privileges: You must have 'API Export' "
                       "privileges and 'Data Access Groups' privileges in the project.")
    columns = allowed_columns(design, rights, select_columns(design, req.list("fields"),
                                                             req.list("forms")))
    events = _chosen_events(design, req.list("events"))
    records = _chosen_records(ctx, req)
    data = ctx.store.data(ctx.pid, records)
    dags = {r.record: r.dag for r in ctx.store.records(ctx.pid)}
    owner = column_owner(design)
    keys = _row_keys(design, data, records, events, columns, owner)
    if req.get("filterLogic"):
        keys = _filtered(design, data, keys, req.get("filterLogic"))
    if req.get("type", "flat") == "eav":
        return _eav(design, keys, data, columns, opts, owner), []
    rows = [_flat_row(design, key, data.get(key, {}), columns, opts, dags, owner) for key in keys]
    header = _key_columns(design, opts) + [c for c in columns if c != design.record_id_field]
    if req.flag("exportSurveyFields") and design.surveys:
        header = _with_survey_fields(design, header, owner)
        for key, row in zip(keys, rows, strict=True):
            for form in design.surveys:
                if form_applies(design, form, key[1], key[2]):
                    row[f"{form}_timestamp"] = data.get(key, {}).get(f"{form}_timestamp", "")
    return [{c: r.get(c, "") for c in header} for r in rows], header


def _with_survey_fields(design: ProjectDesign, header: list[str], owner: Owners) -> list[str]:
    """`redcap_survey_identifier` after the key columns, `<form>_timestamp` before each
    survey's first column, where REDCap puts them."""
    out: list[str] = []
    done: set[str] = set()
    for col in header:
        form = owner[col][0] if col in owner and col != design.record_id_field else None
        if (form is None and col.startswith("redcap_")) or col == design.record_id_field:
            out.append(col)
            continue
        if "redcap_survey_identifier" not in out:
            out.append("redcap_survey_identifier")
        if form in design.surveys and form not in done:
            out.append(f"{form}_timestamp")
            done.add(form)
        out.append(col)
    if "redcap_survey_identifier" not in out:
        out.append("redcap_survey_identifier")
    return out


SPECIAL_HEADERS = {"redcap_event_name": "Event Name", "redcap_repeat_instrument": "Repeat Instrument",
                   "redcap_repeat_instance": "Repeat Instance",
                   "redcap_data_access_group": "Data Access Group",
                   "redcap_survey_identifier": "Survey Identifier"}


def header_labels(design: ProjectDesign, header: list[str]) -> list[str]:
    """`rawOrLabelHeaders=label`: what REDCap writes in the CSV header instead of names."""
    owner = column_owner(design)
    out: list[str] = []
    for col in header:
        if col in SPECIAL_HEADERS:
            out.append(SPECIAL_HEADERS[col])
        elif col.endswith("_timestamp") and col not in owner:
            out.append("Survey Timestamp")
        elif owner.get(col, ("", None))[1] is None:
            out.append("Complete?")
        else:
            f = owner[col][1]
            assert f is not None
            label = re.sub(r"<[^>]+>", "", f.field_label).strip()
            if f.field_type == "checkbox":
                label += f" (choice={dict(f.choices).get(f.checkbox_code(col), '')})"
            out.append(label)
    return out


def _refuse_unemulated(req: ApiRequest) -> None:
    """Parameters REDCap has and the emulator does not implement: refused, never ignored."""
    if req.get("decimalCharacter"):
        raise ApiError(400, 'The parameter "decimalCharacter" is not supported by the REDCap '
                       "emulator")
    if req.get("csvDelimiter") not in ("", ","):
        raise ApiError(400, 'The parameter "csvDelimiter" is not supported by the REDCap '
                       "emulator (only ',')")


def _filtered(design: ProjectDesign, data: dict[RowKey, dict[str, str]], keys: list[RowKey],
              logic: str) -> list[RowKey]:
    try:
        node = parse(logic)
    except LogicError as err:
        raise ApiError(400, f"The value of the parameter \"filterLogic\" is not valid or uses "
                       f"logic the emulator does not evaluate: {err}") from None
    by_name = design.field_by_name()
    events = set(design.event_names())
    for ref in references(logic):
        if ref.field not in by_name and ref.field not in column_owner(design):
            raise ApiError(400, f"The filterLogic refers to the unknown field [{ref.field}]")
        if ref.event is not None and ref.event not in events:
            raise ApiError(400, f"The filterLogic refers to the unknown event [{ref.event}]")

    def row_lookup(key: RowKey) -> Callable[[Ref], str]:
        def look(ref: Ref) -> str:
            if ref.field == design.record_id_field:
                return key[0]
            event = ref.event or key[1]
            values = {**data.get((key[0], event, "", 1), {}),
                      **(data.get(key, {}) if event == key[1] else {})}
            f = by_name.get(ref.field)
            if f is not None and f.field_type == "checkbox":
                if ref.code is None:
                    return ""
                return "1" if values.get(checkbox_export_name(f.field_name, ref.code)) == "1" else "0"
            return values.get(ref.field, "")
        return look

    return [k for k in keys if node(row_lookup(k))]


def allowed_columns(design: ProjectDesign, rights: dict[str, Any],
                    columns: list[str]) -> list[str]:
    """What the caller's rights let out: no field of a form without data entry or export
    access; identifiers (and, de-identified, free text, notes and dates) removed."""
    owner = column_owner(design)
    out: list[str] = []
    for col in columns:
        form, f = owner[col]
        entry, export = rights["forms"].get(form, 0), rights["forms_export"].get(form, 0)
        if col == design.record_id_field:
            out.append(col)
        elif entry == NO_ACCESS or export == NO_ACCESS:
            continue
        elif f is not None and export in (DEIDENTIFIED, IDENTIFIERS_REMOVED) and f.identifier:
            continue
        elif f is not None and export == DEIDENTIFIED and _free_text_or_date(f):
            continue
        else:
            out.append(col)
    return out


def _free_text_or_date(f: FieldDef) -> bool:
    if f.field_type == "notes":
        return True
    if f.field_type != "text":
        return False
    return not f.validation or base_validation(f.validation) in ("date", "datetime",
                                                                 "datetime_seconds")


def _chosen_events(design: ProjectDesign, events: list[str]) -> list[str]:
    known = design.event_names()
    bad = [e for e in events if e not in known]
    if bad:
        raise ApiError(400, 'The following values in the parameter "events" are not valid: '
                       + ", ".join(f"'{e}'" for e in bad))
    return [e for e in known if not events or e in events]


def _chosen_records(ctx: ProjectContext, req: ApiRequest) -> list[str]:
    dag = ctx.user_dag()
    existing = sort_records(r.record for r in ctx.store.records(ctx.pid)
                            if not dag or r.dag == dag)
    wanted = set(req.list("records"))
    begin, end = req.get("dateRangeBegin"), req.get("dateRangeEnd")
    changed = ctx.store.records_changed(ctx.pid, begin or None, end or None) if (
        begin or end) else None
    return [r for r in existing
            if (not wanted or r in wanted) and (changed is None or r in changed)]


def _row_keys(design: ProjectDesign, data: dict[RowKey, dict[str, str]], records: list[str],
              events: list[str], columns: list[str], owner: Owners) -> list[RowKey]:
    """Base rows of every (record, event) with data, then its repeating instances, in order."""
    wanted_forms = {owner[c][0] for c in columns if c in owner and c != design.record_id_field}
    form_order = {f: i for i, f in enumerate(design.forms)}
    by_place: dict[tuple[str, str], list[RowKey]] = {}
    for k in data:
        by_place.setdefault((k[0], k[1]), []).append(k)
    keys: list[RowKey] = []
    for record in records:
        for event in events:
            here = by_place.get((record, event), [])
            base = [k for k in here if k[2] == "" and k[3] == 1]
            repeats = sorted((k for k in here if k not in base),
                             key=lambda k: (form_order.get(k[2], -1), k[3]))
            keys += base
            keys += [k for k in repeats if k[2] == "" or k[2] in wanted_forms]
    return keys


def _key_columns(design: ProjectDesign, opts: ExportOptions) -> list[str]:
    cols = [design.record_id_field]
    if design.longitudinal:
        cols.append("redcap_event_name")
    if design.has_repeating():
        cols += ["redcap_repeat_instrument", "redcap_repeat_instance"]
    if opts.with_dag:
        cols.append("redcap_data_access_group")
    return cols


def _flat_row(design: ProjectDesign, key: RowKey, stored: dict[str, str], columns: list[str],
              opts: ExportOptions, dags: dict[str, str], owner: Owners) -> dict[str, Any]:
    record, event, repeat_instrument, instance = key
    row: dict[str, Any] = {design.record_id_field: record}
    if design.longitudinal:
        row["redcap_event_name"] = design.event_label(event) if opts.event_labels else event
    if design.has_repeating():
        repeated = bool(repeat_instrument) or design.is_repeating_event(event)
        row["redcap_repeat_instrument"] = (
            design.form_label(repeat_instrument) if opts.labels and repeat_instrument
            else repeat_instrument)
        row["redcap_repeat_instance"] = instance if repeated else ""
    if opts.with_dag:
        row["redcap_data_access_group"] = dags.get(record, "")
    for col in columns:
        if col == design.record_id_field:
            continue
        form, f = owner[col]
        if not form_applies(design, form, event, repeat_instrument):
            row[col] = ""
        elif f is None:
            row[col] = _status(stored.get(col, ""), opts)
        else:
            row[col] = _value(f, col, stored, opts)
    return row


def _status(value: str, opts: ExportOptions) -> str:
    if value == "":
        value = "" if opts.blank_gray_status else "0"
    return dict(FORM_STATUS).get(value, value) if opts.labels and value else value


def _value(f: FieldDef, col: str, stored: dict[str, str], opts: ExportOptions) -> str:
    if f.field_type == "checkbox":
        checked = stored.get(col) == "1"
        if opts.checkbox_labels and opts.labels:
            return dict(f.choices).get(f.checkbox_code(col), "") if checked else ""
        if opts.labels:
            return "Checked" if checked else "Unchecked"
        return "1" if checked else "0"
    value = stored.get(col, "")
    if f.field_type == "file" and value:
        return "[document]"  # the doc_id stays inside REDCap
    if opts.labels and value and f.choices:
        return dict(f.choices).get(value, value)
    return value


def _eav(design: ProjectDesign, keys: list[RowKey], data: dict[RowKey, dict[str, str]],
         columns: list[str], opts: ExportOptions, owner: Owners) -> list[dict[str, Any]]:
    """One stored data point per row; a checked checkbox choice is (field, code)."""
    out: list[dict[str, Any]] = []
    for key in keys:
        record, event, repeat_instrument, instance = key
        base: dict[str, Any] = {"record": record}
        if design.longitudinal:
            base["redcap_event_name"] = design.event_label(event) if opts.event_labels else event
        if design.has_repeating():
            repeated = bool(repeat_instrument) or design.is_repeating_event(event)
            base["redcap_repeat_instrument"] = repeat_instrument
            base["redcap_repeat_instance"] = instance if repeated else ""
        stored = data.get(key, {})
        for col in columns:
            value = stored.get(col, "")
            form, f = owner[col]
            if col == design.record_id_field:
                if repeat_instrument == "" and instance == 1:  # once per record and event
                    out.append({**base, "field_name": col, "value": record})
                continue
            if value == "" or not form_applies(design, form, event, repeat_instrument):
                continue
            if f is not None and f.field_type == "checkbox":
                out.append({**base, "field_name": f.field_name, "value": f.checkbox_code(col)})
            else:
                shown = _status(value, opts) if f is None else _value(f, col, stored, opts)
                out.append({**base, "field_name": col, "value": shown})
    return out
