"""content=dag: export, import (create or rename), delete, and switch the caller's group."""

from __future__ import annotations

from dataclasses import replace

from .api_result import ApiResult
from .api_users import import_rows
from .context import ProjectContext
from .formats import render_rows
from .params import ApiError, ApiRequest
from .users import get_user, project_users, require, save_user


def export_dags(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    rows = [{"data_access_group_name": label, "unique_group_name": unique,
             "data_access_group_id": 1000 + i}
            for i, (unique, label) in enumerate(ctx.design.dag_unique_names().items())]
    return ApiResult.data(render_rows(rows, req.format, ["data_access_group_name",
                                                         "unique_group_name",
                                                         "data_access_group_id"]), req.format)


def import_dags(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """A blank unique_group_name creates a group; a known one renames it (its name stays)."""
    require(ctx.rights(), "data_access_groups", "Data Access Groups")
    rows = import_rows(req)
    design = replace(ctx.design, dags=dict(ctx.design.dags))
    for n, row in enumerate(rows, start=1):
        label = str(row.get("data_access_group_name", "") or "").strip()
        unique = str(row.get("unique_group_name", "") or "").strip()
        if not label:
            raise ApiError(400, f"Row {n}: data_access_group_name is missing")
        if unique and unique not in design.dags:
            raise ApiError(400, f"Row {n}: '{unique}' is not a unique group name of a data "
                           "access group")
        if unique:
            design.dags[unique] = label
        else:
            design.add_dag(label)
    with ctx.store.transaction():
        ctx.store.save_design(ctx.pid, design)
        ctx.store.log(ctx.pid, ctx.username, "manage", "Manage data access groups (API)",
                      details=f"Import {len(rows)} data access group(s)")
    return ApiResult.data(str(len(rows)), req.return_format)


def delete_dags(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """Records and users of a deleted group stay, in no group (as in REDCap)."""
    require(ctx.rights(), "data_access_groups", "Data Access Groups")
    names = req.list("dags")
    if not names:
        raise ApiError(400, 'The parameter "dags" is missing')
    missing = [d for d in names if d not in ctx.design.dags]
    if missing:
        raise ApiError(400, "The following values in the parameter \"dags\" are not valid: "
                       + ", ".join(missing))
    design = replace(ctx.design, dags={k: v for k, v in ctx.design.dags.items()
                                       if k not in names})
    with ctx.store.transaction():
        ctx.store.save_design(ctx.pid, design)
        for record in ctx.store.records(ctx.pid):
            if record.dag in names:
                ctx.store.set_dag(ctx.pid, record.record, "")
        for username, user in project_users(ctx.store, ctx.pid).items():
            if user.get("dag") in names:
                save_user(ctx.store, ctx.pid, username, {**user, "dag": ""})
        ctx.store.log(ctx.pid, ctx.username, "manage", "Manage data access groups (API)",
                      details="Delete data access group(s): " + ", ".join(names))
    return ApiResult.data(str(len(names)), req.return_format)


def switch_dag(ctx: ProjectContext, req: ApiRequest) -> ApiResult:
    """The caller's current group becomes `dag`. Allowed into the groups the DAG switcher
    lists for the user (`dag_switch`), or any group (or none) with the DAG privilege."""
    dag = req.get("dag")
    if dag and dag not in ctx.design.dags:
        raise ApiError(400, f"The data access group '{dag}' does not exist in the project")
    user = get_user(ctx.store, ctx.pid, ctx.username)
    if user is None:
        raise ApiError(403, "You do not have permissions to use the API")
    if not ctx.rights().get("data_access_groups") and dag not in user.get("dag_switch", []):
        raise ApiError(403, f"You are not allowed to switch to the data access group '{dag}'")
    with ctx.store.transaction():
        save_user(ctx.store, ctx.pid, ctx.username, {**user, "dag": dag})
        ctx.store.log(ctx.pid, ctx.username, "user", "Switch data access group (API)",
                      details=f"dag = '{dag}'")
    return ApiResult.text("1")
