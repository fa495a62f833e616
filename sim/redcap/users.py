"""A project's users: who they are, their role, their data access group and their rights.

Stored as project objects of kind "user". A user in a role holds the role's rights (as in
REDCap, a role overrides the user's own); a user who is not in the project has none.
"""

from __future__ import annotations

from typing import Any

from .design import ProjectDesign
from .params import ApiError
from .rights import fit_to_forms, full_rights
from .store import Store

KIND = "user"


def project_users(store: Store, pid: int) -> dict[str, dict[str, Any]]:
    return store.objects(pid, KIND)


def get_user(store: Store, pid: int, username: str) -> dict[str, Any] | None:
    return store.get_object(pid, KIND, username)


def save_user(store: Store, pid: int, username: str, user: dict[str, Any]) -> None:
    store.put_object(pid, KIND, username, user)


def new_user(rights: dict[str, Any], **info: str) -> dict[str, Any]:
    return {"email": info.get("email", ""), "firstname": info.get("firstname", ""),
            "lastname": info.get("lastname", ""), "expiration": info.get("expiration", ""),
            "role": "", "dag": "", "rights": rights}


def ensure_user(store: Store, pid: int, design: ProjectDesign, username: str) -> dict[str, Any]:
    """The user, added with full rights when missing (a project creator, a token's owner)."""
    user = get_user(store, pid, username)
    if user is None:
        user = new_user(full_rights(design.forms))
        save_user(store, pid, username, user)
    return user


def effective_rights(design: ProjectDesign, user: dict[str, Any]) -> dict[str, Any]:
    role = design.roles.get(user.get("role", ""))
    return fit_to_forms(role if role is not None else user["rights"], design.forms)


def rights_of(store: Store, pid: int, design: ProjectDesign, username: str) -> dict[str, Any]:
    user = get_user(store, pid, username)
    if user is None:
        raise ApiError(403, "You do not have permissions to use the API")
    return effective_rights(design, user)


def dag_of(store: Store, pid: int, username: str) -> str:
    user = get_user(store, pid, username)
    return str(user.get("dag", "")) if user else ""


def require(rights: dict[str, Any], flag: str, what: str) -> None:
    if not rights.get(flag):
        raise ApiError(403, f"You do not have {what} privileges")
