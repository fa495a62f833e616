"""The console's pages and who may open each.

A page is open to a role when the permission table lets that role call at least one of
the API routes the page reads; each panel on it is shown only when the role may call the
route behind the panel. So the console has no role list of its own to drift from the API's."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.roles import Credential, Role, is_allowed

# The reports service's routes (pooled for blinded roles, per arm for unblinded ones).
REPORT_ROUTES = {name: f"/api/v1/reports/v1/{name}"
                 for name in ("flow", "feasibility", "recruitment", "retention")}


def may(role: Role, method: str, route: str) -> bool:
    return is_allowed(role, method, route, credential=Credential.BEARER)


@dataclass(frozen=True)
class Page:
    key: str
    title: str
    path: str
    reads: tuple[tuple[str, str], ...]

    def open_to(self, role: Role) -> bool:
        return any(may(role, method, route) for method, route in self.reads)


PAGES: tuple[Page, ...] = (
    Page("today", "Today", "/console/today", (
        ("GET", "/api/v1/notifications/v1/tasks"),
        ("GET", "/api/v1/notifications/v1/follow-ups"),
        ("GET", "/api/v1/safety/v1/obligations"),
        ("GET", "/api/v1/ops/dead-letters"),
        ("GET", "/api/v1/audit"),
    )),
    Page("recruitment", "Recruitment & feasibility", "/console/recruitment", (
        *(("GET", route) for route in REPORT_ROUTES.values()),
        ("GET", "/api/v1/notifications/v1/reports/retention"),
    )),
    Page("participants", "Participants", "/console/participants", (
        ("GET", "/api/v1/randomization/v1/allocations/{record}"),
        ("GET", "/api/v1/notifications/v1/schedules/{record}"),
        ("GET", "/api/v1/safety/v1/adverse-events"),
        ("GET", "/api/v1/notifications/v1/messages"),
    )),
    Page("audit", "Audit", "/console/audit", (("GET", "/api/v1/audit"),)),
    Page("randomization", "Randomization", "/console/randomization", (
        ("GET", "/api/v1/randomization/v1/lists"),
        ("GET", "/api/v1/randomization/v1/reports/balance"),
        ("POST", "/api/v1/randomization/v1/allocations/{record}/emergency-unblinding"),
        ("POST", "/api/v1/randomization/v1/lists/{list_id}/close"),
    )),
    Page("safety", "Safety", "/console/safety", (
        ("GET", "/api/v1/safety/v1/adverse-events"),
        ("GET", "/api/v1/safety/v1/reports/blinded"),
        ("GET", "/api/v1/safety/v1/reports/dsmb"),
    )),
    Page("keys", "Keys & settings", "/console/keys", (("GET", "/api/v1/keys"),)),
)
BY_KEY = {page.key: page for page in PAGES}


def pages_for(role: Role) -> list[Page]:
    return [page for page in PAGES if page.open_to(role)]
