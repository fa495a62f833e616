"""Reading a REDCap project from its CSV files: data dictionary, arms, events, mappings, repeating.

The files are the ones a REDCap administrator uploads (or the API accepts): the data
dictionary with REDCap's 18 columns (either the download headers or the API names),
`arms.csv`, `events.csv`, `instrument_event_mapping.csv`, `repeating_instruments.csv`
and optionally `dags.csv`, `user_roles.json` and `surveys.json` (instruments enabled as
surveys: `{"<instrument>": {"title": .., "save_and_return": "1", ..}}`, the settings a
project XML's `redcap:Surveys` carries; REDCap's API has no way to enable a survey).
`load_project_folder` builds and checks a `ProjectDesign`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from .checks import DesignError, check_design
from .design import (
    DICTIONARY_HEADERS,
    METADATA_COLUMNS,
    ArmDef,
    EventDef,
    FieldDef,
    ProjectDesign,
    unique_event_name,
)
from .rights import roles_from_rows

DICTIONARY_FILE = "data_dictionary.csv"
ARMS_FILE = "arms.csv"
EVENTS_FILE = "events.csv"
MAPPING_FILE = "instrument_event_mapping.csv"
REPEATING_FILE = "repeating_instruments.csv"
DAGS_FILE = "dags.csv"
ROLES_FILE = "user_roles.json"  # the API's userRole import format (PyCap import_user_roles)
SURVEYS_FILE = "surveys.json"

_HEADER_TO_COLUMN = dict(zip(DICTIONARY_HEADERS, METADATA_COLUMNS, strict=True))


def read_csv_rows(text: str) -> list[dict[str, str]]:
    """Rows of a CSV text as dicts of stripped strings (a UTF-8 BOM is ignored)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def fields_from_rows(rows: Iterable[Mapping[str, str]]) -> list[FieldDef]:
    """Data dictionary rows (download headers or API column names) -> field definitions."""
    fields: list[FieldDef] = []
    for n, row in enumerate(rows, start=2):
        values = {_HEADER_TO_COLUMN.get(k, k): (v or "") for k, v in row.items()}
        unknown = sorted(set(values) - set(METADATA_COLUMNS))
        if unknown:
            raise DesignError([f"data dictionary: unknown column(s) {unknown}"])
        missing = [c for c in ("field_name", "form_name", "field_type") if not values.get(c)]
        if missing:
            raise DesignError([f"data dictionary row {n}: {', '.join(missing)} is blank"])
        fields.append(FieldDef(**{c: values.get(c, "").strip() for c in METADATA_COLUMNS}))
    return fields


def arms_from_rows(rows: Iterable[Mapping[str, str]]) -> list[ArmDef]:
    return [ArmDef(arm_num=_int(r, "arm_num", "arms"), name=r.get("name", "")) for r in rows]


def events_from_rows(rows: Iterable[Mapping[str, str]], start_id: int = 1,
                     taken: Iterable[str] = ()) -> list[EventDef]:
    """Events as REDCap's event import reads them; the unique name is always generated
    (`day_offset` or, as the export names it, `days_offset`)."""
    events: list[EventDef] = []
    problems: list[str] = []
    taken = list(taken)
    for n, r in enumerate(rows, start=2):
        arm = _int(r, "arm_num", "events")
        name = r.get("event_name", "")
        unique = unique_event_name(name, arm, [*taken, *(e.unique_event_name for e in events)])
        given = r.get("unique_event_name", "")
        if given and given != unique:
            problems.append(
                f"events row {n}: unique_event_name {given!r} is not the name REDCap generates "
                f"from event name {name!r} ({unique!r})")
        events.append(EventDef(
            event_name=name, arm_num=arm, unique_event_name=unique,
            day_offset=_int(r, "day_offset" if r.get("day_offset", "") != "" else "days_offset",
                            "events", 0),
            offset_min=_int(r, "offset_min", "events", 0),
            offset_max=_int(r, "offset_max", "events", 0),
            custom_event_label=r.get("custom_event_label", ""), event_id=start_id + len(events)))
    if problems:
        raise DesignError(problems)
    return events


def mapping_from_rows(rows: Iterable[Mapping[str, str]]) -> dict[str, list[str]]:
    mapping: dict[str, list[str]] = {}
    for r in rows:
        forms = mapping.setdefault(r.get("unique_event_name", ""), [])
        if r.get("form", "") not in forms:
            forms.append(r.get("form", ""))
    return mapping


def repeating_from_rows(rows: Iterable[Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """`event_name, form_name, custom_form_label` rows; a blank form_name repeats the whole event."""
    repeating: dict[str, dict[str, str]] = {}
    for r in rows:
        repeating.setdefault(r.get("event_name", ""), {})[r.get("form_name", "")] = (
            r.get("custom_form_label", ""))
    return repeating


def load_project_folder(folder: str | Path) -> ProjectDesign:
    """Build and check the design a REDCap administrator would create from this folder."""
    root = Path(folder)
    dictionary = root / DICTIONARY_FILE
    if not dictionary.is_file():
        raise DesignError([f"{dictionary}: data dictionary not found"])
    design = ProjectDesign(fields=fields_from_rows(read_csv_rows(_read(dictionary))))
    if (root / EVENTS_FILE).is_file():
        design.events = events_from_rows(read_csv_rows(_read(root / EVENTS_FILE)))
        arms_file = root / ARMS_FILE
        design.arms = (arms_from_rows(read_csv_rows(_read(arms_file))) if arms_file.is_file()
                       else [ArmDef(1, "Arm 1")])
        mapping_file = root / MAPPING_FILE
        if mapping_file.is_file():
            design.mapping = mapping_from_rows(read_csv_rows(_read(mapping_file)))
    if (root / REPEATING_FILE).is_file():
        design.repeating = repeating_from_rows(read_csv_rows(_read(root / REPEATING_FILE)))
    if (root / DAGS_FILE).is_file():
        for r in read_csv_rows(_read(root / DAGS_FILE)):
            design.add_dag(r.get("data_access_group_name", ""))
    if (root / ROLES_FILE).is_file():
        try:
            design.roles = roles_from_rows({}, json.loads(_read(root / ROLES_FILE)),
                                           design.forms)
        except (ValueError, AttributeError) as err:  # RightsError is a ValueError
            raise DesignError([f"{root / ROLES_FILE}: {err}"]) from None
    if (root / SURVEYS_FILE).is_file():
        design.surveys = surveys_from_json(root / SURVEYS_FILE, design.forms)
    check_design(design)
    return design


def surveys_from_json(path: Path, forms: list[str]) -> dict[str, dict[str, str]]:
    try:
        raw = json.loads(_read(path))
    except ValueError as err:
        raise DesignError([f"{path}: not JSON ({err})"]) from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise DesignError([f"{path}: expected {{instrument: {{setting: value}}}}"])
    unknown = [form for form in raw if form not in forms]
    if unknown:
        raise DesignError([f"{path}: {unknown} are not instruments of the data dictionary"])
    return {form: {str(k): str(v) for k, v in settings.items()} for form, settings in raw.items()}


def dictionary_csv(fields: Iterable[FieldDef], *, download_headers: bool = True) -> str:
    """The data dictionary as CSV, with REDCap's download headers or its API column names."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(DICTIONARY_HEADERS if download_headers else METADATA_COLUMNS)
    for f in fields:
        writer.writerow([getattr(f, c) for c in METADATA_COLUMNS])
    return out.getvalue()


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def _int(row: Mapping[str, str], key: str, where: str, default: int | None = None) -> int:
    raw = (row.get(key) or "").strip()
    if raw == "" and default is not None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise DesignError([f"{where}: {key} {raw!r} is not a whole number"]) from None
