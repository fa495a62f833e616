"""Audit: the trail with the API's filters, paging by cursor, CSV export of the same
filters, and the verify verdict of every chain next to the head the gateway witnessed."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.audit_api import CHAINS

from .web import PATH, PageRefused, VisitDep

router = APIRouter(prefix=f"{PATH}/audit", include_in_schema=False)
AUDIT = "/api/v1/audit"
VERIFY = "/api/v1/audit/verify"
TEXT_FILTERS = ("entity_type", "entity_id", "participant", "actor", "action")
TIME_FILTERS = ("since", "until")


def _as_utc(value: str) -> str:
    """A `datetime-local` field's value read as UTC (the API wants an offset)."""
    value = value.strip()
    if not value or value[-1] == "Z" or "+" in value[10:]:
        return value
    return f"{value}:00+00:00" if len(value) == 16 else f"{value}+00:00"


def filters_of(request: Request) -> dict[str, str]:
    """The filters as typed (for the form) — only known names, blanks dropped."""
    query = request.query_params
    chosen = {name: query[name].strip() for name in (*TEXT_FILTERS, *TIME_FILTERS, "service", "limit")
              if query.get(name, "").strip()}
    if chosen.get("service") and chosen["service"] not in CHAINS:
        raise PageRefused(400, "Unknown chain", f"service: one of {', '.join(CHAINS)}")
    return chosen


def api_params(filters: dict[str, str]) -> dict[str, str]:
    params = dict(filters)
    for name in TIME_FILTERS:
        if name in params:
            params[name] = _as_utc(params[name])
    params.setdefault("limit", "50")
    return params


@router.get("", response_class=HTMLResponse)
async def audit_trail(request: Request, visit: VisitDep, cursor: str | None = None) -> Response:
    page = visit.require("audit")
    filters = filters_of(request)
    listing = await visit.api.get(AUDIT, **api_params(filters), cursor=cursor)
    verify = await visit.api.get(VERIFY)
    next_link = None
    if listing.ok and listing.body.get("next_cursor"):
        next_link = f"{PATH}/audit?" + urlencode({**filters, "cursor": listing.body["next_cursor"]})
    return visit.render("audit.html", page, listing=listing, verify=verify, filters=filters,
                        chains=CHAINS, next_link=next_link,
                        csv_link=f"{PATH}/audit/export.csv?" + urlencode(
                            {**filters, **({"cursor": cursor} if cursor else {})}))


@router.get("/export.csv")
async def export_csv(request: Request, visit: VisitDep, cursor: str | None = None) -> Response:
    visit.require("audit")
    params = {**api_params(filters_of(request)), "format": "csv", "cursor": cursor}
    answer = await visit.api.call("GET", AUDIT, params=params, accept="text/csv")
    if not answer.ok:
        raise PageRefused(answer.status if answer.status < 500 else 503, "Export failed", answer.detail)
    headers = {"Content-Disposition": 'attachment; filename="tailor-audit.csv"'}
    if answer.headers.get("x-next-cursor"):
        headers["X-Next-Cursor"] = answer.headers["x-next-cursor"]
    return Response(answer.text, media_type="text/csv; charset=utf-8", headers=headers)
