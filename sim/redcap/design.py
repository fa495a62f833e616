"""The shape of a REDCap project: fields, instruments, arms, events, mappings, repeating setup.

Pure data with REDCap's own naming rules (unique event names, checkbox export names,
instrument labels); no I/O. A `ProjectDesign` round-trips through JSON for storage.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any

# The 18 columns of a REDCap data dictionary, in REDCap's order (API names).
METADATA_COLUMNS: tuple[str, ...] = (
    "field_name", "form_name", "section_header", "field_type", "field_label",
    "select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
    "text_validation_min", "text_validation_max", "identifier", "branching_logic",
    "required_field", "custom_alignment", "question_number", "matrix_group_name",
    "matrix_ranking", "field_annotation",
)

# The same columns as REDCap's "Download the current Data Dictionary" writes them.
DICTIONARY_HEADERS: tuple[str, ...] = (
    "Variable / Field Name", "Form Name", "Section Header", "Field Type", "Field Label",
    "Choices, Calculations, OR Slider Labels", "Field Note",
    "Text Validation Type OR Show Slider Number", "Text Validation Min", "Text Validation Max",
    "Identifier?", "Branching Logic (Show field only if...)", "Required Field?",
    "Custom Alignment", "Question Number (surveys only)", "Matrix Group Name",
    "Matrix Ranking?", "Field Annotation",
)

CHOICE_TYPES = frozenset({"radio", "dropdown", "checkbox"})
FORM_STATUS = (("0", "Incomplete"), ("1", "Unverified"), ("2", "Complete"))
NOT_IMPORTABLE = frozenset({"descriptive", "calc", "file", "sql"})


@dataclass(frozen=True)
class FieldDef:
    """One data dictionary row, under its API column names."""

    field_name: str
    form_name: str
    field_type: str
    field_label: str = ""
    section_header: str = ""
    select_choices_or_calculations: str = ""
    field_note: str = ""
    text_validation_type_or_show_slider_number: str = ""
    text_validation_min: str = ""
    text_validation_max: str = ""
    identifier: str = ""
    branching_logic: str = ""
    required_field: str = ""
    custom_alignment: str = ""
    question_number: str = ""
    matrix_group_name: str = ""
    matrix_ranking: str = ""
    field_annotation: str = ""

    @property
    def validation(self) -> str:
        return self.text_validation_type_or_show_slider_number

    @property
    def choices(self) -> tuple[tuple[str, str], ...]:
        """Coded choices: radio/dropdown/checkbox parse column F; yes/no and true/false are fixed."""
        if self.field_type == "yesno":
            return (("1", "Yes"), ("0", "No"))
        if self.field_type == "truefalse":
            return (("1", "True"), ("0", "False"))
        if self.field_type in CHOICE_TYPES:
            return parse_choices(self.select_choices_or_calculations)
        return ()

    def action_tags(self) -> set[str]:
        return {t.upper() for t in re.findall(r"@[A-Za-z][A-Za-z0-9_-]*", self.field_annotation)}

    def export_names(self) -> list[str]:
        """Column names this field exports as (a checkbox exports one column per choice)."""
        if self.field_type == "checkbox":
            return [checkbox_export_name(self.field_name, code) for code, _ in self.choices]
        if self.field_type == "descriptive":
            return []
        return [self.field_name]

    def checkbox_code(self, export_name: str) -> str:
        """The choice code behind a checkbox export column (`cons_optout___sms` -> `sms`)."""
        for code, _ in self.choices:
            if checkbox_export_name(self.field_name, code) == export_name:
                return code
        return export_name.split("___", 1)[-1]

    def as_row(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in METADATA_COLUMNS}


@dataclass(frozen=True)
class ArmDef:
    arm_num: int
    name: str


@dataclass(frozen=True)
class EventDef:
    event_name: str
    arm_num: int
    unique_event_name: str
    day_offset: int = 0
    offset_min: int = 0
    offset_max: int = 0
    custom_event_label: str = ""
    event_id: int = 0


@dataclass
class ProjectDesign:
    """Everything that defines a project's structure; no arms and no events: a classic project."""

    fields: list[FieldDef]
    form_labels: dict[str, str] = field(default_factory=dict)
    arms: list[ArmDef] = field(default_factory=list)
    events: list[EventDef] = field(default_factory=list)
    # unique event name -> forms designated for it (longitudinal only)
    mapping: dict[str, list[str]] = field(default_factory=dict)
    # unique event name -> {form: custom label}; the key "" holds a whole repeating event
    repeating: dict[str, dict[str, str]] = field(default_factory=dict)
    # unique group name -> label
    dags: dict[str, str] = field(default_factory=dict)
    # user roles: unique_role_name -> {"role_label", every right flag, "forms", "forms_export"}
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # instruments enabled as surveys: form -> survey settings (title, save_and_return, ...)
    surveys: dict[str, dict[str, str]] = field(default_factory=dict)

    # ---- derived lookups -------------------------------------------------------------
    @property
    def record_id_field(self) -> str:
        return self.fields[0].field_name

    @property
    def longitudinal(self) -> bool:
        """A project with arms stays longitudinal even while an override left it no events."""
        return bool(self.events) or bool(self.arms)

    @property
    def forms(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.fields:
            seen.setdefault(f.form_name, None)
        return list(seen)

    def form_label(self, form: str) -> str:
        return self.form_labels.get(form) or default_form_label(form)

    def field_by_name(self) -> dict[str, FieldDef]:
        return {f.field_name: f for f in self.fields}

    def fields_of(self, form: str) -> list[FieldDef]:
        return [f for f in self.fields if f.form_name == form]

    def event_names(self) -> list[str]:
        """Unique event names in order; a classic project has REDCap's implicit first event."""
        return [e.unique_event_name for e in self.events] or [CLASSIC_EVENT]

    def event_by_name(self) -> dict[str, EventDef]:
        return {e.unique_event_name: e for e in self.events}

    def forms_in_event(self, event: str) -> list[str]:
        if not self.longitudinal:
            return self.forms
        return self.mapping.get(event, [])

    def is_repeating_form(self, event: str, form: str) -> bool:
        return form in self.repeating.get(event, {}) and form != ""

    def is_repeating_event(self, event: str) -> bool:
        return "" in self.repeating.get(event, {})

    def has_repeating(self) -> bool:
        return any(self.repeating.values())

    def arm_of_event(self, event: str) -> int:
        e = self.event_by_name().get(event)
        return e.arm_num if e else 1

    def event_label(self, event: str) -> str:
        e = self.event_by_name().get(event)
        if e is None:
            return event
        arm = next((a.name for a in self.arms if a.arm_num == e.arm_num), f"Arm {e.arm_num}")
        return f"{e.event_name} (Arm {e.arm_num}: {arm})"

    def dag_unique_names(self) -> dict[str, str]:
        """unique group name -> group label."""
        return dict(self.dags)

    def add_dag(self, label: str) -> str:
        """A new group; its unique name follows REDCap's slug rule."""
        unique = unique_name_from(label, self.dags.keys(), limit=18)
        self.dags[unique] = label
        return unique

    # ---- storage -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProjectDesign:
        return cls(
            fields=[FieldDef(**f) for f in data["fields"]],
            form_labels=dict(data.get("form_labels") or {}),
            arms=[ArmDef(**a) for a in data.get("arms") or []],
            events=[EventDef(**e) for e in data.get("events") or []],
            mapping={k: list(v) for k, v in (data.get("mapping") or {}).items()},
            repeating={k: dict(v) for k, v in (data.get("repeating") or {}).items()},
            dags=_dags_from_json(data.get("dags")),
            roles={k: dict(v) for k, v in (data.get("roles") or {}).items()},
            surveys={k: dict(v) for k, v in (data.get("surveys") or {}).items()},
        )


def _dags_from_json(raw: Any) -> dict[str, str]:
    """Stored as {unique: label}; older databases kept a list of labels."""
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    design = ProjectDesign(fields=[])
    for label in raw or []:
        design.add_dag(str(label))
    return design.dags


CLASSIC_EVENT = "event_1_arm_1"


def parse_choices(text: str) -> tuple[tuple[str, str], ...]:
    """`1, Female | 2, Male` -> (("1", "Female"), ("2", "Male")); REDCap also accepts newlines."""
    out: list[tuple[str, str]] = []
    for part in re.split(r"\s*\|\s*|\n", text.strip()):
        if not part.strip():
            continue
        code, _, label = part.partition(",")
        out.append((code.strip(), label.strip()))
    return tuple(out)


def checkbox_export_name(field_name: str, code: str) -> str:
    """REDCap's export column for one checkbox choice: `field___code` (`-` becomes `_`, lower case)."""
    return f"{field_name}___{code.lower().replace('-', '_').replace('.', '_')}"


def default_form_label(form: str) -> str:
    """The label REDCap gives an instrument created from a data dictionary."""
    return " ".join(w[:1].upper() + w[1:] for w in form.split("_"))


def unique_name_from(label: str, taken: Collection[str], *, limit: int) -> str:
    """REDCap's slug rule: lower case, spaces to `_`, other characters dropped, truncated."""
    base = re.sub(r"[^a-z0-9_]", "", label.strip().lower().replace(" ", "_"))[:limit] or "x"
    name, suffix = base, ord("b")
    while name in taken:
        name, suffix = f"{base}{chr(suffix)}", suffix + 1
    return name


def unique_event_name(event_name: str, arm_num: int, taken: Collection[str] = ()) -> str:
    """`T0 baseline` in arm 1 -> `t0_baseline_arm_1` (REDCap truncates the name to 18 characters)."""
    base = re.sub(r"[^a-z0-9_]", "", event_name.strip().lower().replace(" ", "_"))[:18] or "event"
    name, suffix = f"{base}_arm_{arm_num}", ord("b")
    while name in taken:
        name, suffix = f"{base}{chr(suffix)}_arm_{arm_num}", suffix + 1
    return name
