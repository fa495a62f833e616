"""REDCap user rights: the privilege flags, per-instrument data entry and export rights.

Pure data and checks, no I/O. A rights dict holds every flag of `RIGHT_FLAGS` (0/1) plus
`forms` (instrument -> data entry right) and `forms_export` (instrument -> export right),
the shape REDCap's API uses for `content=user` and `content=userRole`.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterable, Mapping
from typing import Any

RIGHT_FLAGS: tuple[str, ...] = (
    "design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
    "manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool",
    "logging", "email_logging", "file_repository", "data_quality_create", "data_quality_execute",
    "api_export", "api_import", "api_modules", "mobile_app", "mobile_app_download_data",
    "record_create", "record_rename", "record_delete", "lock_records_customization",
    "lock_records", "lock_records_all_forms",
)
USER_INFO: tuple[str, ...] = ("username", "email", "firstname", "lastname", "expiration",
                              "data_access_group", "data_access_group_id")
# Data entry: 0 no access, 1 view & edit, 2 read only, 3 edit survey responses.
ENTRY_RIGHTS = frozenset({0, 1, 2, 3})
# Export: 0 no access, 1 full data set, 2 de-identified, 3 identifiers removed.
EXPORT_RIGHTS = frozenset({0, 1, 2, 3})
NO_ACCESS = 0
FULL = 1
DEIDENTIFIED = 2
IDENTIFIERS_REMOVED = 3


class RightsError(ValueError):
    """A user or role row REDCap would refuse; the message names the column."""


def full_rights(forms: Iterable[str]) -> dict[str, Any]:
    """What the creator of a project holds: every privilege, every instrument."""
    forms = list(forms)
    return {**{f: 1 for f in RIGHT_FLAGS}, "forms": {f: FULL for f in forms},
            "forms_export": {f: FULL for f in forms}}


def default_rights(forms: Iterable[str]) -> dict[str, Any]:
    """A user added without rights: no privileges, view & edit forms, no export."""
    forms = list(forms)
    return {**{f: 0 for f in RIGHT_FLAGS}, "forms": {f: FULL for f in forms},
            "forms_export": {f: NO_ACCESS for f in forms}}


def parse_form_rights(raw: Any, forms: Iterable[str], column: str) -> dict[str, int]:
    """`{"a": 1}` (JSON) or `a:1,b:0` (CSV/XML) -> {form: right}; unknown forms are refused."""
    known = set(forms)
    allowed = ENTRY_RIGHTS if column == "forms" else EXPORT_RIGHTS
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("{"):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError:
                raise RightsError(f"The value of '{column}' is not valid") from None
        else:
            pairs = [p.split(":", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise RightsError(f"The value of '{column}' is not valid")
            raw = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(raw, Mapping):
        raise RightsError(f"The value of '{column}' is not valid")
    out: dict[str, int] = {}
    for form, value in raw.items():
        if form not in known:
            raise RightsError(f"The instrument '{form}' in '{column}' does not exist in the project")
        try:
            right = int(value)
        except (TypeError, ValueError):
            right = -1
        if right not in allowed:
            raise RightsError(f"The value '{value}' for instrument '{form}' in '{column}' is "
                              "not valid")
        out[form] = right
    return out


def apply_row(rights: Mapping[str, Any], row: Mapping[str, Any], forms: list[str]) -> dict[str, Any]:
    """Rights with the columns given in an import row changed (others keep their value)."""
    out: dict[str, Any] = {**rights, "forms": dict(rights.get("forms", {})),
                           "forms_export": dict(rights.get("forms_export", {}))}
    for flag in RIGHT_FLAGS:
        if flag in row and str(row[flag]).strip() != "":
            value = str(row[flag]).strip()
            if value not in ("0", "1", "2"):
                raise RightsError(f"The value '{value}' of '{flag}' is not valid (0 or 1)")
            out[flag] = int(value)
    for column in ("forms", "forms_export"):
        if column in row and row[column] not in ("", None):
            out[column].update(parse_form_rights(row[column], forms, column))
    return out


def fit_to_forms(rights: Mapping[str, Any], forms: list[str]) -> dict[str, Any]:
    """Every instrument listed (a new one: no access), removed instruments dropped."""
    out = dict(rights)
    for column in ("forms", "forms_export"):
        given = rights.get(column, {})
        out[column] = {f: int(given.get(f, NO_ACCESS)) for f in forms}
    for flag in RIGHT_FLAGS:
        out.setdefault(flag, 0)
    return out


def render_form_rights(rights: Mapping[str, int], fmt: str) -> Any:
    """JSON keeps the object; CSV and XML write `a:1,b:0` as REDCap does."""
    if fmt == "json":
        return dict(rights)
    return ",".join(f"{k}:{v}" for k, v in rights.items())


def can_see_form(rights: Mapping[str, Any], form: str) -> bool:
    """Any data entry access (read only included) or any export right shows the form's data."""
    return bool(rights.get("forms", {}).get(form, 0)) or bool(
        rights.get("forms_export", {}).get(form, 0))


def new_role_name(taken: set[str]) -> str:
    """REDCap's unique role names look like `U-527D39JXAC`."""
    alphabet = string.ascii_uppercase + string.digits
    while True:
        name = "U-" + "".join(secrets.choice(alphabet) for _ in range(10))
        if name not in taken:
            return name


def roles_from_rows(roles: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
                    forms: list[str]) -> dict[str, dict[str, Any]]:
    """Roles after an import: a blank unique_role_name creates a role, a known one updates it."""
    out = {k: dict(v) for k, v in roles.items()}
    for n, row in enumerate(rows, start=1):
        name = str(row.get("unique_role_name", "") or "").strip()
        if name and name not in out:
            raise RightsError(f"Row {n}: the unique role name '{name}' does not exist")
        label = str(row.get("role_label", "") or "").strip()
        if not name and not label:
            raise RightsError(f"Row {n}: a new role needs a role_label")
        name = name or new_role_name(set(out))
        base = out.get(name) or {"role_label": label, **default_rights(forms)}
        try:
            role = apply_row(base, row, forms)
        except RightsError as err:
            raise RightsError(f"Role '{label or name}': {err}") from None
        role["role_label"] = label or base["role_label"]
        out[name] = role
    return out
