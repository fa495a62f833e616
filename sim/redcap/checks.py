"""The checks REDCap runs when a data dictionary, events or mappings are uploaded.

Every problem is collected (REDCap lists them all) and raised as one `DesignError`.
"""

from __future__ import annotations

import re

from .design import CHOICE_TYPES, CLASSIC_EVENT, FieldDef, ProjectDesign, parse_choices
from .values import VALIDATIONS, base_validation, is_known_validation

FIELD_TYPES = frozenset({
    "text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse", "calc", "file",
    "slider", "descriptive", "sql",
})
RESERVED = frozenset({
    "redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
    "redcap_data_access_group", "redcap_survey_identifier", "record", "field_name", "value",
})
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_CODE = re.compile(r"-?[A-Za-z0-9_.]+")
# [field], [field(code)], [event][field]; smart variables contain a hyphen and are skipped
_REFERENCE = re.compile(r"\[([a-z][a-z0-9_]*)(?:\([^)]*\))?\]")


class DesignError(ValueError):
    """The project definition would be refused by REDCap; `problems` lists every reason."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    @property
    def field(self) -> str | None:
        m = re.match(r"\(([^)]+)\)", self.problems[0]) if self.problems else None
        return m.group(1) if m else None


def check_design(design: ProjectDesign) -> None:
    problems = check_fields(design.fields)
    problems += _check_events(design)
    if problems:
        raise DesignError(problems)


def check_fields(fields: list[FieldDef]) -> list[str]:
    if not fields:
        return ["The data dictionary has no fields."]
    problems: list[str] = []
    if fields[0].field_type != "text":
        problems.append(f"({fields[0].field_name}) The first field is the record ID field and "
                        "must be a text field.")
    names = [f.field_name for f in fields]
    forms = list(dict.fromkeys(f.form_name for f in fields))
    problems += _check_names(names, forms)
    problems += _check_form_blocks(fields)
    known = set(names)
    for f in fields:
        problems += [f"({f.field_name}) {p}" for p in _check_field(f, known)]
    return problems


def _check_names(names: list[str], forms: list[str]) -> list[str]:
    problems: list[str] = []
    for name in names:
        if not _NAME.fullmatch(name) or "___" in name or len(name) > 100:
            problems.append(f"({name}) Variable names may contain only lower-case letters, numbers "
                            "and single underscores, and must begin with a letter.")
        if name in RESERVED or name in {f"{form}_complete" for form in forms}:
            problems.append(f"({name}) This variable name is reserved by REDCap.")
    problems += [f"({n}) This variable name is used more than once."
                 for n in sorted({n for n in names if names.count(n) > 1})]
    problems += [f"({form}) Form names may contain only lower-case letters, numbers and "
                 "underscores, and must begin with a letter." for form in forms
                 if not _NAME.fullmatch(form)]
    return problems


def _check_form_blocks(fields: list[FieldDef]) -> list[str]:
    seen: list[str] = []
    problems: list[str] = []
    for f in fields:
        if seen and seen[-1] == f.form_name:
            continue
        if f.form_name in seen:
            problems.append(f"({f.field_name}) The fields of form '{f.form_name}' are not "
                            "together: all fields of a form must be adjacent.")
        seen.append(f.form_name)
    return problems


def _check_field(f: FieldDef, known: set[str]) -> list[str]:
    if f.field_type not in FIELD_TYPES:
        return [f"'{f.field_type}' is not a valid field type."]
    problems: list[str] = []
    if f.field_type in CHOICE_TYPES:
        problems += _check_choices(f)
    if f.field_type == "calc" and not f.select_choices_or_calculations:
        problems.append("A calculated field needs a calculation.")
    if f.validation and f.field_type == "text":
        problems += _check_validation(f)
    elif f.validation and f.field_type not in ("slider",):
        problems.append("Only text fields can have a validation type.")
    for col, allowed in (("identifier", {"", "y"}), ("required_field", {"", "y"}),
                         ("matrix_ranking", {"", "y"}),
                         ("custom_alignment", {"", "LV", "LH", "RV", "RH"})):
        if getattr(f, col) not in allowed:
            problems.append(f"'{getattr(f, col)}' is not a valid value for {col}.")
    logic = f.branching_logic + " " + (
        f.select_choices_or_calculations if f.field_type == "calc" else "")
    problems += [f"The branching logic or calculation refers to an unknown field [{ref}]."
                 for ref in _REFERENCE.findall(logic) if ref not in known and "_arm_" not in ref]
    return problems


def _check_choices(f: FieldDef) -> list[str]:
    choices = parse_choices(f.select_choices_or_calculations)
    if not choices:
        return ["A multiple choice field needs choices ('code, label | code, label')."]
    codes = [c for c, _ in choices]
    problems = [f"The choice code '{c}' is not valid." for c in codes if not _CODE.fullmatch(c)]
    problems += [f"The choice code '{c}' is used twice." for c in sorted(set(codes))
                 if codes.count(c) > 1]
    problems += [f"The choice '{c}' has no label." for c, label in choices if not label]
    return problems


def _check_validation(f: FieldDef) -> list[str]:
    if not is_known_validation(f.validation):
        return [f"'{f.validation}' is not a valid validation type."]
    _, kind = VALIDATIONS[base_validation(f.validation)]
    problems: list[str] = []
    for col in ("text_validation_min", "text_validation_max"):
        bound = getattr(f, col)
        if not bound or (kind == "date" and bound.lower() in ("today", "now")):
            continue
        if kind == "number" and not re.fullmatch(r"[-+]?\d+(\.\d+)?", bound):
            problems.append(f"{col} '{bound}' is not a number.")
        if kind == "date" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2})?)?", bound):
            problems.append(f"{col} '{bound}' is not a date (Y-M-D).")
    return problems


def _check_events(design: ProjectDesign) -> list[str]:
    problems: list[str] = []
    forms = set(design.forms)
    arms = {a.arm_num for a in design.arms}
    if design.longitudinal:
        problems += [f"(event {e.unique_event_name}) arm {e.arm_num} does not exist."
                     for e in design.events if e.arm_num not in arms]
    events = set(design.event_names())
    for event, mapped in design.mapping.items():
        if event not in events:
            problems.append(f"(mapping) '{event}' is not a unique event name of this project.")
        problems += [f"(mapping) '{form}' is not an instrument of this project."
                     for form in mapped if form not in forms]
    for event, repeats in design.repeating.items():
        if event not in events and not (event == CLASSIC_EVENT and not design.longitudinal):
            problems.append(f"(repeating) '{event}' is not a unique event name of this project.")
            continue
        for form in repeats:
            if form and form not in design.forms_in_event(event):
                problems.append(f"(repeating) '{form}' is not designated for event '{event}'.")
    return problems
