"""Safety: adverse-event cases with every version and what changed between versions, the
blinded safety report, and the DSMB's unblinded report (shown only when the table lets
the role read it: the DSMB)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from .format import seg
from .web import PATH, PageRefused, VisitDep

router = APIRouter(prefix=f"{PATH}/safety", include_in_schema=False)
CASES = "/api/v1/safety/v1/adverse-events"
BLINDED = "/api/v1/safety/v1/reports/blinded"
DSMB = "/api/v1/safety/v1/reports/dsmb"


def group_rows(report: Any, path: str = "") -> list[dict[str, Any]]:
    """Every group of a safety report (an object with participants and counts), flattened
    to one row each, named by where it sits (`by_module / PERT`)."""
    rows: list[dict[str, Any]] = []
    if not isinstance(report, dict):
        return rows
    if "counts" in report and "participants" in report:
        counts = report.get("counts") or {}
        rows.append({"group": path or "overall", "participants": report.get("participants"),
                     "events": counts.get("events"), "with_event": counts.get("participants_with_event"),
                     "serious": counts.get("serious"), "related": counts.get("related"),
                     "rate": _rate(report.get("events_per_participant_year")),
                     "serious_rate": _rate(report.get("serious_per_participant_year"))})
        return rows
    for key, value in report.items():
        rows += group_rows(value, f"{path} / {key}" if path else key)
    return rows


def _rate(value: Any) -> str:
    return "—" if value is None else f"{float(value):.2f}"


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        return {prefix: ", ".join(str(v) for v in value)}
    return {prefix: "" if value is None else str(value)}


def version_diffs(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per version: the fields that differ from the version before (all fields for the first)."""
    diffs: list[dict[str, Any]] = []
    before: dict[str, str] = {}
    for version in versions:
        now = flatten(version.get("event") or {})
        changed = [(k, before.get(k, ""), v) for k, v in now.items() if before.get(k) != v]
        diffs.append({**version, "changes": changed})
        before = now
    return diffs


@router.get("", response_class=HTMLResponse)
async def safety(visit: VisitDep) -> Response:
    page = visit.require("safety")
    cases = await visit.api.get(CASES) if visit.may("GET", CASES) else None
    blinded = await visit.api.get(BLINDED) if visit.may("GET", BLINDED) else None
    dsmb = await visit.api.get(DSMB) if visit.may("GET", DSMB) else None
    return visit.render("safety.html", page, cases=cases, blinded=blinded, dsmb=dsmb,
                        blinded_rows=group_rows(blinded.body) if blinded and blinded.ok else [],
                        dsmb_rows=group_rows(dsmb.body) if dsmb and dsmb.ok else [])


@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case(case_id: str, visit: VisitDep) -> Response:
    page = visit.require("safety")
    if not visit.may("GET", f"{CASES}/{{case_id}}"):
        raise PageRefused(403, "Not for your role", "adverse-event cases are for the safety officer")
    found = await visit.api.get(f"{CASES}/{seg(case_id)}")
    if not found.ok:
        raise PageRefused(found.status if found.status < 500 else 503, "No such case", found.detail)
    versions = await visit.api.get(f"{CASES}/{seg(case_id)}/versions")
    return visit.render("case.html", page, case=found.body,
                        diffs=version_diffs(versions.body) if versions.ok else [], versions=versions)
