"""Recruitment & feasibility: the reports service's CONSORT flow, feasibility verdicts,
recruitment curve and retention, plus the notifications service's retention per timepoint.
Each panel is what the API gives this role; a service that cannot answer is shown as such."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from services.core.roles import find_rule

from . import svg
from .client import Answer
from .pages import REPORT_ROUTES
from .web import PATH, VisitDep

router = APIRouter(prefix=PATH, include_in_schema=False)
RETENTION = "/api/v1/notifications/v1/reports/retention"
NO_REPORTS = Answer(503, {"detail": "the reports service is not part of this gateway yet"}, "", {})


def flow_plot(flow: dict[str, Any]) -> Markup:
    pooled = flow.get("pooled") or {}
    excluded = flow.get("excluded") or {}
    stages = [("Assessed for eligibility", flow.get("assessed")),
              ("Randomized", flow.get("randomized")),
              ("Allocated", pooled.get("allocated")),
              ("Continuing", pooled.get("continuing")),
              ("Analysed", pooled.get("analysed"))]
    side = [(0, f"Excluded (not eligible {excluded.get('not_meeting_criteria', '—')}, "
                f"declined {excluded.get('declined', '—')})", flow.get("excluded_total")),
            (2, "Lost to follow-up / discontinued",
             None if pooled.get("lost_to_follow_up") is None
             else int(pooled.get("lost_to_follow_up", 0)) + int(pooled.get("discontinued", 0)))]
    return svg.flow_diagram(stages, side, title=f"CONSORT flow as of {flow.get('as_of', 'today')}")


def recruitment_plot(rec: dict[str, Any]) -> Markup:
    weeks = rec.get("weeks") or []
    return svg.cumulative_chart([str(w.get("week_start", "")) for w in weeks],
                                [int(w.get("cumulative", 0)) for w in weeks],
                                target=rec.get("target"), title="Participants randomized, cumulative by week")


def retention_plot(ret: dict[str, Any]) -> Markup:
    rows = [(t.get("label") or t.get("timepoint", ""), t.get("response_rate"),
             t.get("response_ci_low"), t.get("response_ci_high")) for t in ret.get("timepoints", [])]
    return svg.interval_chart(rows, title="Response rate per timepoint (Wilson 95% interval)")


def feasibility_plot(rows: list[dict[str, Any]]) -> Markup:
    proportions = [(r.get("label") or r.get("key", ""), r.get("value"), r.get("ci_low"), r.get("ci_high"))
                   for r in rows if r.get("measure") != "count"]
    return svg.interval_chart(proportions, title="Feasibility proportions with confidence intervals")


async def _report(visit: VisitDep, name: str) -> Answer | None:
    route = REPORT_ROUTES[name]
    if find_rule("GET", route) is None:
        return NO_REPORTS
    if not visit.may("GET", route):
        return None
    return await visit.api.get(route)


@router.get("/recruitment", response_class=HTMLResponse)
async def recruitment(visit: VisitDep) -> Response:
    page = visit.require("recruitment")
    # The reports service's own retention is not drawn: the notifications service's below is.
    reports = {name: await _report(visit, name) for name in ("flow", "feasibility", "recruitment")}
    plots: dict[str, Markup] = {}
    flow, rec, feas = reports["flow"], reports["recruitment"], reports["feasibility"]
    if flow is not None and flow.ok and isinstance(flow.body, dict):
        plots["flow"] = flow_plot(flow.body)
    if rec is not None and rec.ok and isinstance(rec.body, dict):
        plots["recruitment"] = recruitment_plot(rec.body)
    criteria: list[dict[str, Any]] = []
    if feas is not None and feas.ok:
        body = feas.body
        criteria = body.get("criteria", []) if isinstance(body, dict) else body or []
        plots["feasibility"] = feasibility_plot(criteria)
    retention = await visit.api.get(RETENTION) if visit.may("GET", RETENTION) else None
    if retention is not None and retention.ok:
        plots["retention"] = retention_plot(retention.body)
    return visit.render("recruitment.html", page, reports=reports, plots=plots, criteria=criteria,
                        retention=retention)
