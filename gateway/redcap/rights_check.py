"""Blinding check of the REDCap project's user rights.

The written-back treatment module plus the baseline MPI-D answers (with the shipped model)
give the cluster, and cluster + module give the arm. The diary's answers show the module
too (only the diary module's participants have them), so they count as the allocation.
So no REDCap user or role other than
Tailor's own API account may see both: the allocation form and a baseline form holding
MPI-D items. "See" means any data entry access (read-only included) or any export right
to the form; a user who may edit user rights could grant itself both and is named too.

`find_offenders` is pure; `check_project_rights` reads users, roles and metadata through
the REDCap API (PyCap).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.core.protocol.redcap import RedcapProject


@dataclass(frozen=True)
class Offender:
    kind: str  # "user" or "role"
    name: str  # username or unique role name
    label: str  # the role's label; for a user, its role's unique name or ""
    reason: str

    def describe(self) -> str:
        label = f" ({self.label})" if self.label else ""
        return f"{self.kind} {self.name}{label}: {self.reason}"


@dataclass(frozen=True)
class SensitiveForms:
    allocation: frozenset[str]
    mpid: frozenset[str]


def sensitive_forms(metadata: Iterable[Mapping[str, str]], redcap: RedcapProject, *,
                    module_forms: Collection[str] = ()) -> SensitiveForms:
    """The forms holding the written-back allocation (and `module_forms`, whose data only
    one module's participants have: the diary's answers), and the baseline forms with
    MPI-D items."""
    f = redcap.fields
    written = {f.allocation_module, f.allocation_number, f.allocation_time}
    allocation, mpid = set(), set()
    for row in metadata:
        name, form = row.get("field_name", ""), row.get("form_name", "")
        if name in written or form in module_forms:
            allocation.add(form)
        if name.startswith(f.mpid_item_prefix) and form in redcap.baseline_forms:
            mpid.add(form)
    return SensitiveForms(frozenset(allocation), frozenset(mpid))


def _form_rights(raw: Any) -> dict[str, int]:
    """PyCap gives JSON objects; a CSV-style `a:1,b:0` string is read too."""
    if isinstance(raw, Mapping):
        return {str(k): int(v or 0) for k, v in raw.items()}
    pairs = [p.split(":", 1) for p in str(raw or "").split(",") if ":" in p]
    return {k.strip(): int(v.strip() or 0) for k, v in pairs}


def visible_forms(rights: Mapping[str, Any]) -> set[str]:
    entry, export = _form_rights(rights.get("forms")), _form_rights(rights.get("forms_export"))
    return {form for form in {*entry, *export} if entry.get(form) or export.get(form)}


def _reason(rights: Mapping[str, Any], forms: SensitiveForms) -> str | None:
    seen = visible_forms(rights)
    alloc, mpid = sorted(seen & forms.allocation), sorted(seen & forms.mpid)
    if alloc and mpid:
        return f"sees the allocation ({', '.join(alloc)}) and baseline MPI-D ({', '.join(mpid)})"
    if str(rights.get("user_rights", "0")) == "1":
        return "may change user rights, so could grant itself the allocation and MPI-D forms"
    return None


def find_offenders(users: Iterable[Mapping[str, Any]], roles: Iterable[Mapping[str, Any]],
                   forms: SensitiveForms, *, service_user: str,
                   role_of: Mapping[str, str] | None = None) -> list[Offender]:
    """Every role, and every user other than Tailor's API account, that could derive the arm.
    A user in a role holds the role's rights (`role_of`: username -> unique role name)."""
    out: list[Offender] = []
    by_name = {str(r.get("unique_role_name", "")): r for r in roles}
    for name, role in by_name.items():
        reason = _reason(role, forms)
        if reason:
            out.append(Offender("role", name, str(role.get("role_label", "")), reason))
    for user in users:
        name = str(user.get("username", ""))
        role_name = (role_of or {}).get(name, "")
        reason = _reason(by_name.get(role_name, user), forms)
        if reason and name != service_user:
            out.append(Offender("user", name, role_name, reason))
    return out


def check_project_rights(project: Any, redcap: RedcapProject, *, service_user: str,
                         personalized: bool = True,
                         module_forms: Collection[str] = ()) -> list[Offender]:
    """Read metadata, users and roles through PyCap (`redcap.Project`) and judge them.
    Without personalization no MPI-D is collected: nothing in REDCap gives the arm but the
    allocation itself, so only the allocation form must exist."""
    forms = sensitive_forms(project.export_metadata(), redcap, module_forms=module_forms)
    if not forms.allocation or (personalized and not forms.mpid):
        missing = "allocation" if not forms.allocation else "baseline MPI-D"
        return [Offender("project", "metadata", "", f"no {missing} form found: check the "
                         "protocol's redcap section against the project")]
    role_of = {str(m.get("username", "")): str(m.get("unique_role_name", "") or "")
               for m in project.export_user_role_assignment()}
    return find_offenders(project.export_users(), project.export_user_roles(), forms,
                          service_user=service_user, role_of=role_of)
