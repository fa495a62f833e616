"""content=user, userRole, userRoleMapping, userDagMapping: export, import, delete.

Each needs the caller's "User Rights" privilege (DAG mappings: "Data Access Groups").
Imports are checked completely first and change nothing when any row is wrong.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from .api_result import ApiResult
from .context import ProjectContext
from .formats import ImportFormatError, parse_rows, render_rows
from .params import ApiError, ApiRequest
from .rights import (
    RIGHT_FLAGS,
    USER_INFO,
    RightsError,
    apply_row,
    default_rights,
    render_form_rights,
    roles_from_rows,
)
from .users import effective_rights, get_user, new_user, project_users, require, save_user

ROLE_COLUMNS = ["unique_role_name", "role_label", *RIGHT_FLAGS, "forms", "forms_export"]
USER_COLUMNS = [*USER_INFO, *RIGHT_FLAGS, "forms", "forms_export"]


def import_rows(req: ApiRequest) -> list[dict[str, Any]]:
    """The `data` of an import; JSON keeps nested objects (`forms`), CSV/XML are text."""
    if "data" not in req.scalars:
        raise ApiError(400, 'The parameter "data" is missing')
    raw = req.scalars["data"]
    try:
        if req.format == "json":
            parsed = json.loads(raw)
            parsed = [parsed] if isinstance(parsed, dict) else parsed
            if not isinstance(parsed, list) or not all(isinstance(r, dict) for r in parsed):
                raise ImportFormatError("The JSON data must be an array of objects")
            return parsed
        return parse_rows(raw, req.format)
    except (json.JSONDecodeError, ImportFormatError) as err:
        raise ApiError(400, f"The data could not be read: {err}") from None


def _user_rights_privilege(ctx: ProjectContext) -> None:
    require(ctx.rights(), "user_rights", "User Rights")


def _rights_out(rights: dict[str, Any], fmt: str) -> dict[str, Any]:
    out = {f: rights.get(f, 0) for f in RIGHT_FLAGS}
    out["forms"] = render_form_rights(rights["forms"], fmt)
    out["forms_export"] = render_form_rights(rights["forms_export"], fmt)
    return out


def _render(rows: list[dict[str, Any]], req: ApiRequest, columns: list[str]) -> ApiResult:
    return ApiResult.data(render_rows(rows, req.format, columns), req.format)


def _dag_id(ctx: ProjectContext, unique: str) -> Any:
    names = list(ctx.design.dag_unique_names())
    return 1000 + names.index(unique) if unique in names else ""


# ---- users ------------------------------------------------------------------------------
def export_users(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    rows = []
    for username, user in project_users(ctx.store, ctx.pid).items():
        rows.append({"username": username, "email": user.get("email", ""),
                     "firstname": user.get("firstname", ""), "lastname": user.get("lastname", ""),
                     "expiration": user.get("expiration", ""),
                     "data_access_group": user.get("dag", ""),
                     "data_access_group_id": _dag_id(ctx, user.get("dag", "")),
                     **_rights_out(effective_rights(ctx.design, user), req.format)})
    return _render(rows, req, USER_COLUMNS)


def import_users(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    rows = import_rows(req)
    forms, dags = ctx.design.forms, ctx.design.dag_unique_names()
    planned: dict[str, dict[str, Any]] = {}
    for n, row in enumerate(rows, start=1):
        username = str(row.get("username", "")).strip()
        if not username:
            raise ApiError(400, f"Row {n}: the username is missing")
        user = planned.get(username) or get_user(ctx.store, ctx.pid, username) or new_user(
            default_rights(forms))
        try:
            user = {**user, "rights": apply_row(user["rights"], row, forms)}
        except RightsError as err:
            raise ApiError(400, f"User '{username}': {err}") from None
        for key in ("email", "firstname", "lastname", "expiration"):
            if key in row:
                user[key] = str(row[key] or "")
        dag = str(row.get("data_access_group", user.get("dag", "")) or "")
        if dag and dag not in dags:
            raise ApiError(400, f"User '{username}': '{dag}' is not a unique group name of a "
                           "data access group")
        user["dag"] = dag
        planned[username] = user
    with ctx.store.transaction():
        for username, user in planned.items():
            save_user(ctx.store, ctx.pid, username, user)
            ctx.store.log(ctx.pid, ctx.username, "user", "Add/edit user (API)",
                          details=f"user = '{username}'")
    return ApiResult.data(str(len(planned)), req.return_format)


def delete_users(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    names = req.list("users")
    if not names:
        raise ApiError(400, 'The parameter "users" is missing')
    known = project_users(ctx.store, ctx.pid)
    missing = [u for u in names if u not in known]
    if missing:
        raise ApiError(400, "The following users are not in the project: " + ", ".join(missing))
    if ctx.username in names:
        raise ApiError(400, "You cannot delete your own user account from the project")
    with ctx.store.transaction():
        for username in names:
            ctx.store.delete_object(ctx.pid, "user", username)
            ctx.store.delete_tokens_of(ctx.pid, username)
            ctx.store.log(ctx.pid, ctx.username, "user", "Delete user (API)",
                          details=f"user = '{username}'")
    return ApiResult.data(str(len(names)), req.return_format)


# ---- roles ------------------------------------------------------------------------------
def export_roles(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    rows = [{"unique_role_name": name, "role_label": role.get("role_label", ""),
             **_rights_out(effective_rights(ctx.design, {"role": name}), req.format)}
            for name, role in ctx.design.roles.items()]
    return _render(rows, req, ROLE_COLUMNS)


def import_roles(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    rows = import_rows(req)
    try:
        roles = roles_from_rows(ctx.design.roles, rows, ctx.design.forms)
    except RightsError as err:
        raise ApiError(400, str(err)) from None
    _save_roles(ctx, roles, f"Add/edit {len(rows)} user role(s) (API)")
    return ApiResult.data(str(len(rows)), req.return_format)


def delete_roles(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    names = req.list("roles")
    if not names:
        raise ApiError(400, 'The parameter "roles" is missing')
    missing = [r for r in names if r not in ctx.design.roles]
    if missing:
        raise ApiError(400, "The following roles do not exist: " + ", ".join(missing))
    users = project_users(ctx.store, ctx.pid)
    busy = sorted(u for u, user in users.items() if user.get("role") in names)
    if busy:
        raise ApiError(400, "A role cannot be deleted while users are assigned to it: "
                       + ", ".join(busy))
    roles = {k: v for k, v in ctx.design.roles.items() if k not in names}
    _save_roles(ctx, roles, "Delete user role(s) (API): " + ", ".join(names))
    return ApiResult.data(str(len(names)), req.return_format)


def _save_roles(ctx: ProjectContext, roles: dict[str, dict[str, Any]], details: str) -> None:
    with ctx.store.transaction():
        ctx.store.save_design(ctx.pid, replace(ctx.design, roles=roles))
        ctx.store.log(ctx.pid, ctx.username, "user", "Manage user roles (API)", details=details)


# ---- role and DAG assignments ---------------------------------------------------------------
def export_role_mapping(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    rows = [{"username": u, "unique_role_name": user.get("role", ""),
             "data_access_group": user.get("dag", "")}
            for u, user in project_users(ctx.store, ctx.pid).items()]
    return _render(rows, req, ["username", "unique_role_name", "data_access_group"])


def import_role_mapping(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    _user_rights_privilege(ctx)
    return _assign(ctx, req, "unique_role_name", "role", set(ctx.design.roles),
                   "is not a unique role name of the project")


def export_dag_mapping(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    require(ctx.rights(), "data_access_groups", "Data Access Groups")
    rows = [{"username": u, "redcap_data_access_group": user.get("dag", "")}
            for u, user in project_users(ctx.store, ctx.pid).items()]
    return _render(rows, req, ["username", "redcap_data_access_group"])


def import_dag_mapping(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    require(ctx.rights(), "data_access_groups", "Data Access Groups")
    return _assign(ctx, req, "redcap_data_access_group", "dag",
                   set(ctx.design.dag_unique_names()), "is not a unique group name of a data "
                   "access group")


def _assign(ctx: ProjectContext, req: ApiRequest, column: str, key: str, known: set[str],
            problem: str) -> ApiResult:
    rows = import_rows(req)
    users = project_users(ctx.store, ctx.pid)
    for row in rows:
        username, value = str(row.get("username", "")).strip(), str(row.get(column, "") or "")
        if username not in users:
            raise ApiError(400, f"The user '{username}' is not in the project")
        if value and value not in known:
            raise ApiError(400, f"'{value}' {problem}")
        users[username] = {**users[username], key: value}
    with ctx.store.transaction():
        for row in rows:
            username = str(row.get("username", "")).strip()
            save_user(ctx.store, ctx.pid, username, users[username])
            ctx.store.log(ctx.pid, ctx.username, "user", f"Assign user {key} (API)",
                          details=f"user = '{username}', {key} = '{users[username][key]}'")
    return ApiResult.data(str(len(rows)), req.return_format)
