"""Randomization: lists (generate, import, seal, commitment statement, extend; closure by
the study manager, then unsealing with the two-person rule, each step with a reason; the
unsealed list for unblinded roles), balance in the form the role may see, and emergency
unblinding with a reason and a confirmation step."""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from .format import seg
from .views_participants import _record
from .web import PATH, PageRefused, VisitDep, visit_form

router = APIRouter(prefix=f"{PATH}/randomization", include_in_schema=False)
LISTS = "/api/v1/randomization/v1/lists"
BALANCE = "/api/v1/randomization/v1/reports/balance"
UNBLIND = "/api/v1/randomization/v1/allocations/{record}/emergency-unblinding"
HERE = f"{PATH}/randomization"


@router.get("", response_class=HTMLResponse)
async def randomization(visit: VisitDep) -> Response:
    page = visit.require("randomization")
    lists = await visit.api.get(LISTS) if visit.may("GET", LISTS) else None
    balance = await visit.api.get(BALANCE) if visit.may("GET", BALANCE) else None
    return visit.render("randomization.html", page, lists=lists, balance=balance,
                        can_generate=visit.may("POST", LISTS),
                        can_seal=visit.may("POST", f"{LISTS}/x/seal"),
                        can_extend=visit.may("POST", f"{LISTS}/x/extend"),
                        can_close=visit.may("POST", f"{LISTS}/x/close"),
                        can_unseal=visit.may("POST", f"{LISTS}/x/unseal"),
                        can_read_unsealed=visit.may("GET", f"{LISTS}/x/unsealed"),
                        can_unblind=visit.may("POST", UNBLIND))


def _slots(value: str, field: str, *, required: bool) -> int | None:
    value = value.strip()
    if not value and not required:
        return None
    if not value.isdigit() or not 0 < int(value) <= 100_000:
        raise PageRefused(400, "Not a number of slots", f"{field}: a whole number from 1 to 100000")
    return int(value)


@router.post("/lists")
async def generate(visit: VisitDep) -> Response:
    visit.require("randomization")
    form = await visit_form(visit)
    slots = _slots(form.get("slots_per_stratum", ""), "slots_per_stratum", required=False)
    answer = await visit.api.post(LISTS, {"slots_per_stratum": slots} if slots else {})
    if answer.ok:
        return visit.done(HERE, "ok", f"List {answer.body['id']} generated; seal it to start allocating.")
    return visit.done(HERE, "error", f"Not generated: {answer.detail}")


@router.post("/lists/import")
async def import_list(visit: VisitDep) -> Response:
    visit.require("randomization")
    form = await visit_form(visit)
    text = form.get("csv", "").strip()
    if not text:
        raise PageRefused(400, "Nothing to import", "csv: paste the list as CSV")
    answer = await visit.api.call("POST", f"{LISTS}/import", content=text.encode(),
                                  content_type="text/csv")
    if answer.ok:
        return visit.done(HERE, "ok", f"List {answer.body['id']} imported; seal it to start allocating.")
    return visit.done(HERE, "error", f"Not imported: {answer.detail}")


@router.post("/lists/{list_id}/seal")
async def seal(list_id: str, visit: VisitDep) -> Response:
    visit.require("randomization")
    await visit_form(visit)
    answer = await visit.api.post(f"{LISTS}/{seg(list_id)}/seal")
    if answer.ok:
        digest = str(answer.body.get("digest", ""))[:16]
        return visit.done(HERE, "ok", f"List {list_id} sealed; commitment {digest}… is in the audit chain.")
    return visit.done(HERE, "error", f"Not sealed: {answer.detail}")


@router.post("/lists/{list_id}/extend")
async def extend(list_id: str, visit: VisitDep) -> Response:
    visit.require("randomization")
    form = await visit_form(visit)
    body = {"stratum": form.get("stratum", "").strip(),
            "slots": _slots(form.get("slots", ""), "slots", required=True)}
    answer = await visit.api.post(f"{LISTS}/{seg(list_id)}/extend", body)
    if answer.ok:
        return visit.done(HERE, "ok", f"Stratum {body['stratum']} of list {list_id} extended.")
    return visit.done(HERE, "error", f"Not extended: {answer.detail}")


def _reason(form: dict[str, str], what: str) -> str:
    reason = form.get("reason", "").strip()
    if not reason:
        raise PageRefused(400, "A reason is required", f"reason: say why {what}")
    return reason


@router.post("/lists/close")
async def close(visit: VisitDep) -> Response:
    """The study manager ends allocation; only a closed list may be unsealed."""
    visit.require("randomization")
    form = await visit_form(visit)
    list_id = form.get("list_id", "").strip()
    if not list_id:
        raise PageRefused(400, "Which list?", "list_id: the id of the sealed list to close")
    reason = _reason(form, "allocation ends")
    answer = await visit.api.post(f"{LISTS}/{seg(list_id)}/close", {"reason": reason})
    if answer.ok:
        return visit.done(HERE, "ok", f"Allocation on list {list_id} closed; it may now be unsealed.")
    return visit.done(HERE, "error", f"Not closed: {answer.detail}")


@router.post("/lists/{list_id}/unseal")
async def unseal(list_id: str, visit: VisitDep) -> Response:
    visit.require("randomization")
    form = await visit_form(visit)
    reason = _reason(form, "the list is unsealed")
    answer = await visit.api.post(f"{LISTS}/{seg(list_id)}/unseal", {"reason": reason})
    if answer.status == 202:
        waiting = ", ".join(answer.body.get("awaiting_roles", []))
        return visit.done(HERE, "ok", f"Unsealing requested; waiting for {waiting} to confirm.")
    if answer.ok:
        verified = "verified against its commitment" if answer.body.get("verified") else "NOT verified"
        return visit.done(HERE, "ok", f"List {list_id} unsealed and {verified}.")
    return visit.done(HERE, "error", f"Not unsealed: {answer.detail}")


@router.get("/lists/{list_id}/commitment.json")
async def commitment(list_id: str, visit: VisitDep) -> Response:
    visit.require("randomization")
    answer = await visit.api.get(f"{LISTS}/{seg(list_id)}/commitment")
    if not answer.ok:
        raise PageRefused(answer.status if answer.status < 500 else 503, "No commitment", answer.detail)
    name = f"commitment-{list_id}.json".replace('"', "")
    return Response(json.dumps(answer.body, indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/unsealed.json")
async def unsealed(visit: VisitDep, list_id: str = "") -> Response:
    """The unsealed list (seed and every slot's arm), for the unblinded roles the table names;
    the randomization service audits the read."""
    visit.require("randomization")
    if not list_id.strip():
        raise PageRefused(400, "Which list?", "list_id: the id of an unsealed list")
    answer = await visit.api.get(f"{LISTS}/{seg(list_id.strip())}/unsealed")
    if not answer.ok:
        raise PageRefused(answer.status if answer.status < 500 else 503, "No unsealed list", answer.detail)
    name = f"unsealed-{list_id.strip()}.json".replace('"', "")
    return Response(json.dumps(answer.body, indent=2), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/unblinding", response_class=HTMLResponse)
async def unblinding(visit: VisitDep) -> Response:
    """First post: the confirmation step. Second post (confirm=yes): the unblinding."""
    page = visit.require("randomization")
    if not visit.may("POST", UNBLIND):
        raise PageRefused(403, "Not for your role", "emergency unblinding is for the study manager")
    form = await visit_form(visit)
    record, reason = _record(form.get("record", "")), form.get("reason", "").strip()
    if not reason:
        raise PageRefused(400, "A reason is required",
                          "reason: say why the allocation must be unblinded")
    if form.get("confirm") != "yes":
        return visit.render("unblind_confirm.html", page, record=record, reason=reason)
    answer = await visit.api.post(UNBLIND.format(record=seg(record)), {"reason": reason})
    if not answer.ok:
        return visit.done(HERE, "error", f"Not unblinded: {answer.detail}")
    return visit.render("unblind_result.html", page, record=record, result=answer.body)
