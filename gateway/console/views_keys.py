"""Keys & settings (admins): every API key (never a secret), issuing a key shown once,
revoking; and the console's own settings as they are in force."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.core.roles import BEARER_ROLES

from .format import seg
from .web import PATH, PageRefused, VisitDep, console_of, visit_form

router = APIRouter(prefix=f"{PATH}/keys", include_in_schema=False)
KEYS = "/api/v1/keys"


@router.get("", response_class=HTMLResponse)
async def keys(visit: VisitDep) -> Response:
    page = visit.require("keys")
    listing = await visit.api.get(KEYS)
    settings = console_of(visit.request).settings
    return visit.render("keys.html", page, listing=listing, roles=sorted(r.value for r in BEARER_ROLES),
                        settings=settings, issued=None)


@router.post("", response_class=HTMLResponse)
async def issue(visit: VisitDep) -> Response:
    page = visit.require("keys")
    form = await visit_form(visit)
    body: dict[str, object] = {"name": form.get("name", "").strip(), "role": form.get("role", "")}
    days = form.get("expires_in_days", "").strip()
    if days:
        if not days.isdigit():
            raise PageRefused(400, "Not a number of days", "expires_in_days: a whole number of days")
        body["expires_in_days"] = int(days)
    answer = await visit.api.post(KEYS, body)
    if not answer.ok:
        return visit.done(f"{PATH}/keys", "error", f"No key issued: {answer.detail}")
    listing = await visit.api.get(KEYS)
    # The one time the key is shown: rendered, never put in a redirect or a flash.
    return visit.render("keys.html", page, listing=listing, roles=sorted(r.value for r in BEARER_ROLES),
                        settings=console_of(visit.request).settings, issued=answer.body)


@router.post("/{key_id}/revoke")
async def revoke(key_id: str, visit: VisitDep) -> Response:
    visit.require("keys")
    await visit_form(visit)
    answer = await visit.api.post(f"{KEYS}/{seg(key_id)}/revoke")
    if answer.ok:
        return visit.done(f"{PATH}/keys", "ok", f"Key {key_id} revoked.")
    return visit.done(f"{PATH}/keys", "error", f"Not revoked: {answer.detail}")
