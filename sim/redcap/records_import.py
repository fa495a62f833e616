"""Importing record data: every row is checked first, then all of it is saved or none of it.

Used by the API (`content=record` import) and by the emulator's "save a form in the
user interface", which differ only in who is logged and in blank handling.
Errors read like REDCap's: one line per problem, `"record","field","value","message"`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from .context import ProjectContext
from .design import FieldDef, ProjectDesign
from .layout import Owners, column_owner, complete_field, form_applies
from .params import ApiError
from .store import RowKey
from .values import check_checkbox, check_form_status, check_value

SPECIAL = ("redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
           "redcap_data_access_group", "redcap_survey_identifier")
CANNOT_IMPORT = {"calc": "a calculated field", "file": "a file upload field",
                 "descriptive": "a descriptive field", "sql": "a dynamic SQL field"}


@dataclass
class PlannedRow:
    record: str
    event: str
    repeat_instrument: str
    instance: int | None  # None: the next free instance ("new")
    values: dict[str, str] = field(default_factory=dict)
    dag: str = ""


@dataclass
class ImportOutcome:
    ids: list[str]
    auto_ids: list[str]
    changed_keys: list[RowKey]


def eav_to_flat(design: ProjectDesign, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """EAV rows (record, field_name, value, ...) grouped into flat rows."""
    by_name = design.field_by_name()
    grouped: dict[tuple[str, ...], dict[str, str]] = {}
    for r in rows:
        key = (r.get("record", ""), r.get("redcap_event_name", ""),
               r.get("redcap_repeat_instrument", ""), r.get("redcap_repeat_instance", ""))
        flat = grouped.setdefault(key, {design.record_id_field: key[0], **{
            k: v for k, v in zip(SPECIAL[:3], key[1:], strict=True) if v}})
        name, value = r.get("field_name", ""), r.get("value", "")
        f = by_name.get(name)
        if f is not None and f.field_type == "checkbox":
            flat[f"{name}___{value}".lower()] = "1"
        else:
            flat[name] = value
    return list(grouped.values())


def plan_rows(design: ProjectDesign, rows: list[dict[str, str]], *, date_format: str = "YMD",
              now: Callable[[], datetime] | None = None) -> list[PlannedRow]:
    """Check every row against the project; raise one ApiError listing all problems."""
    rid = design.record_id_field
    owner = column_owner(design)
    allowed = set(owner) | set(SPECIAL) | {f"{form}_timestamp" for form in design.forms}
    unknown = sorted({k for r in rows for k in r if k not in allowed})
    if unknown:
        raise ApiError(400, "The following fields were not found in the project as real data "
                       "fields: " + ", ".join(unknown))
    if rows and any(rid not in r for r in rows):
        raise ApiError(400, f"The record ID field ({rid}) is missing from the data being imported")
    problems: list[str] = []
    planned = [_plan_row(design, owner, r, problems, date_format, now) for r in rows]
    if problems:
        raise ApiError(400, "\n".join(problems))
    return planned


def _line(record: str, name: str, value: str, message: str) -> str:
    return ",".join('"' + s.replace('"', '""') + '"' for s in (record, name, value, message))


def _plan_row(design: ProjectDesign, owner: Owners, row: dict[str, str], problems: list[str],
              date_format: str, now: Callable[[], datetime] | None) -> PlannedRow:
    rid = design.record_id_field
    record = row.get(rid, "").strip()
    if not record:
        problems.append(_line("", rid, "", "The record ID cannot be blank."))
    event, ok = _event_of(design, row, record, problems)
    plan = PlannedRow(record, event, row.get("redcap_repeat_instrument", "").strip(), 1,
                      dag=row.get("redcap_data_access_group", "").strip())
    if ok:
        _repeat_context(design, plan, row.get("redcap_repeat_instance", "").strip(), problems)
    if plan.dag and plan.dag not in design.dag_unique_names():
        problems.append(_line(record, "redcap_data_access_group", plan.dag,
                              "This is not a unique group name of a data access group."))
    for name, raw in row.items():
        if name in SPECIAL or (name.endswith("_timestamp") and name not in owner) or name == rid:
            continue
        form, f = owner[name]
        value, problem = _checked(f, name, raw, date_format, now)
        if problem is None and value != "" and ok:
            problem = _placement_problem(design, plan, form, name)
        if problem:
            problems.append(_line(record, name, raw, problem))
        plan.values[name] = value
    return plan


def _event_of(design: ProjectDesign, row: dict[str, str], record: str,
              problems: list[str]) -> tuple[str, bool]:
    given = row.get("redcap_event_name", "").strip()
    if not design.longitudinal:
        return design.event_names()[0], True
    if not given:
        problems.append(_line(record, "redcap_event_name", "", "The unique event name is "
                              "missing; it is required for longitudinal projects."))
        return "", False
    if given not in design.event_names():
        problems.append(_line(record, "redcap_event_name", given,
                              "This is not a valid unique event name of the project."))
        return given, False
    return given, True


def _repeat_context(design: ProjectDesign, plan: PlannedRow, instance: str,
                    problems: list[str]) -> None:
    form, event = plan.repeat_instrument, plan.event
    if form and not design.is_repeating_form(event, form):
        problems.append(_line(plan.record, "redcap_repeat_instrument", form,
                              f"The instrument '{form}' is not a repeating instrument in "
                              f"event '{event}'."))
    repeating = bool(form) or design.is_repeating_event(event)
    if instance.lower() == "new" and repeating:
        plan.instance = None
    elif instance.isdigit() and int(instance) >= 1 and (repeating or instance == "1"):
        plan.instance = int(instance)
    elif instance == "" and not form:
        plan.instance = 1
    else:
        problems.append(_line(plan.record, "redcap_repeat_instance", instance,
                              "The repeat instance must be a whole number of 1 or more (or "
                              "'new') and is only allowed for repeating instruments or events."))


def _checked(f: FieldDef | None, name: str, raw: str, date_format: str,
             now: Callable[[], datetime] | None) -> tuple[str, str | None]:
    if f is None:
        return raw.strip(), check_form_status(name, raw)
    if f.field_type in CANNOT_IMPORT and raw.strip():
        return raw, f"The field '{f.field_name}' is {CANNOT_IMPORT[f.field_type]} and cannot be imported."
    if f.field_type == "checkbox":
        return raw.strip(), check_checkbox(raw)
    return check_value(f, raw, date_format=date_format, now=now)


def _placement_problem(design: ProjectDesign, plan: PlannedRow, form: str, name: str) -> str | None:
    if form not in design.forms_in_event(plan.event):
        return (f"This field ('{name}') exists on an instrument that is not designated for the "
                f"event named '{design.event_label(plan.event)}'. You are not allowed to import "
                "data for this field into this event.")
    if not form_applies(design, form, plan.event, plan.repeat_instrument):
        if plan.repeat_instrument:
            return (f"This field ('{name}') is not on the repeating instrument "
                    f"'{plan.repeat_instrument}' named in redcap_repeat_instrument.")
        return (f"This field ('{name}') is on the repeating instrument '{form}', so "
                "redcap_repeat_instrument and redcap_repeat_instance must be provided.")
    return None


def next_record_name(existing: list[str]) -> str:
    """REDCap's next auto-number: one more than the highest numeric record name."""
    numbers = [int(r) for r in existing if r.isdigit()]
    return str(max(numbers, default=0) + 1)


def apply_rows(ctx: ProjectContext, planned: list[PlannedRow], *, overwrite: bool,
               force_auto: bool = False, via: str = "API") -> ImportOutcome:
    """Save checked rows in one transaction, logging each changed (record, event, instance)."""
    store, design = ctx.store, ctx.design
    with store.transaction():
        known = {r.record for r in store.records(ctx.pid)}
        renamed: dict[str, str] = {}
        if force_auto:
            for plan in planned:
                if plan.record not in renamed:
                    renamed[plan.record] = next_record_name([*known, *renamed.values()])
        data = store.data(ctx.pid, [renamed.get(p.record, p.record) for p in planned])
        owner = column_owner(design)
        ids: list[str] = []
        changed: list[RowKey] = []
        to_announce: set[str] = set()
        for plan in planned:
            record = renamed.get(plan.record, plan.record)
            if record not in known:
                store.add_record(ctx.pid, record, design.arm_of_event(plan.event), plan.dag)
                known.add(record)
                to_announce.add(record)
            elif plan.dag:
                store.set_dag(ctx.pid, record, plan.dag)
            if record not in ids:
                ids.append(record)
            key, updates = _save_row(ctx, owner, data, record, plan, overwrite)
            if updates or record in to_announce:
                changed.append(key)
                _log_change(ctx, key, updates, plan.repeat_instrument,
                            created=record in to_announce, via=via)
                to_announce.discard(record)
    pairs = [f"{new},{old}" for old, new in renamed.items()] or [f"{i},{i}" for i in ids]
    return ImportOutcome(ids, pairs, changed)


def _save_row(ctx: ProjectContext, owner: Owners, data: dict[RowKey, dict[str, str]],
              record: str, plan: PlannedRow, overwrite: bool) -> tuple[RowKey, dict[str, str]]:
    """Write one row's changes; blanks erase only under overwrite. Returns what changed."""
    design, store = ctx.design, ctx.store
    instance = plan.instance or 1 + max(
        (k[3] for k in data if k[:3] == (record, plan.event, plan.repeat_instrument)), default=0)
    key: RowKey = (record, plan.event, plan.repeat_instrument, instance)
    stored = data.setdefault(key, {})
    updates: dict[str, str] = {}
    for name, value in plan.values.items():
        f = owner[name][1]
        if f is not None and f.field_type == "checkbox" and value == "0":
            value = ""  # an unchecked choice is stored as no row, as in REDCap
        elif value == "" and not overwrite:
            continue
        if stored.get(name, "") != value:
            updates[name] = value
    for form in {owner[n][0] for n, v in plan.values.items() if v and owner[n][1] is not None}:
        status = complete_field(form)
        if not stored.get(status) and not updates.get(status):
            updates[status] = "0"  # REDCap marks a form it saves data into as Incomplete
    base: RowKey = (record, plan.event, "", 1)
    if design.record_id_field not in data.setdefault(base, {}):
        store.put_value(ctx.pid, base, design.record_id_field, record)
        data[base][design.record_id_field] = record
    for name, value in updates.items():
        store.put_value(ctx.pid, key, name, value)
        if value:
            stored[name] = value
        else:
            stored.pop(name, None)
    return key, updates


def _log_change(ctx: ProjectContext, key: RowKey, updates: dict[str, str], repeat_instrument: str,
                *, created: bool, via: str) -> None:
    record, event, _, instance = key
    details = ", ".join(f"{n} = '{v}'" for n, v in updates.items())
    if instance > 1 or repeat_instrument:
        details = f"[instance = {instance}]" + (f", {details}" if details else "")
    verb = "Create record" if created else "Update record"
    suffix = " (API)" if via == "API" else ""
    ctx.store.log(ctx.pid, ctx.username, "record_add" if created else "record_edit",
                  f"{verb}{suffix} {record}", record=record, event=event, details=details)
