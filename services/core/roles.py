"""Roles, what each may see, and which role may call which public route.

Everything here is data, kept in one place so the gateway and every service
enforce the same rules (defense in depth): the gateway checks a public route
before proxying it, and the owning service checks its own route again with the
caller's role from the internal token. It lives in `services.core` because
services may not import the gateway.

Routes are written as the gateway exposes them (`/api/v1/<service>/...`); a
service checks its own path with `is_allowed_for_service`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    REDCAP = "redcap"
    COORDINATOR = "coordinator"
    ASSESSOR = "assessor"
    STUDY_MANAGER = "study_manager"
    STATISTICIAN = "statistician"
    MONITOR = "monitor"
    SAFETY_OFFICER = "safety_officer"
    DSMB = "dsmb"
    OPS = "ops"
    ADMIN = "admin"


class Capability(StrEnum):
    # Sees arm and cluster (cluster + module reveals the arm).
    UNBLINDED_VIEW = "unblinded_view"
    # Takes part in unsealing a randomization list once the study manager has closed
    # allocation; the service requires every co-signing role (each with a reason) before it
    # unseals, and the unsealed list itself is read by unblinded roles only.
    UNSEAL_LIST_AT_CLOSURE = "unseal_list_at_closure"
    # May read data about an individual participant (every such read is audited).
    PARTICIPANT_DATA = "participant_data"


class View(StrEnum):
    """The response shape a caller receives: chosen by role, never filtered after."""

    BLINDED = "blinded"
    UNBLINDED = "unblinded"


class Credential(StrEnum):
    """How a route's caller proves who they are."""

    NONE = "none"  # probes and the OpenAPI document: nothing to protect
    BEARER = "bearer"  # API key or OIDC token
    REDCAP_SECRET = "redcap_secret"  # noqa: S105  (the DET URL secret; grants that route only)
    SESSION = "session"  # the web console's session cookie; the console checks it per page
    # The survey-link secret (services/core/survey_links.py): notifications only, for the
    # internal survey-link routes; the route checks it and records the read itself.
    SURVEY_LINK_SECRET = "survey_link_secret"  # noqa: S105


ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.REDCAP: frozenset(),
    Role.COORDINATOR: frozenset({Capability.PARTICIPANT_DATA}),
    Role.ASSESSOR: frozenset({Capability.PARTICIPANT_DATA}),
    Role.STUDY_MANAGER: frozenset({Capability.UNBLINDED_VIEW, Capability.PARTICIPANT_DATA}),
    Role.STATISTICIAN: frozenset({Capability.UNSEAL_LIST_AT_CLOSURE}),
    Role.MONITOR: frozenset({Capability.UNSEAL_LIST_AT_CLOSURE, Capability.PARTICIPANT_DATA}),
    Role.SAFETY_OFFICER: frozenset({Capability.PARTICIPANT_DATA}),
    Role.DSMB: frozenset({Capability.UNBLINDED_VIEW, Capability.PARTICIPANT_DATA}),
    Role.OPS: frozenset(),
    Role.ADMIN: frozenset(),
}

UNBLINDED_ROLES = frozenset(r for r, caps in ROLE_CAPABILITIES.items() if Capability.UNBLINDED_VIEW in caps)
# Roles a person may hold through an API key or an OIDC token; `redcap` is
# granted only by the DET secret.
BEARER_ROLES = frozenset(Role) - {Role.REDCAP}


class UnknownRoleError(ValueError):
    def __init__(self, value: object, field: str = "role") -> None:
        super().__init__(f"{field}: unknown role {value!r}")
        self.field = field
        self.value = value


def parse_role(value: str, *, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        raise UnknownRoleError(value, field) from None


def has_capability(role: Role, capability: Capability) -> bool:
    return capability in ROLE_CAPABILITIES[role]


def is_unblinded(role: Role) -> bool:
    return role in UNBLINDED_ROLES


def response_view(role: Role) -> View:
    return View.UNBLINDED if is_unblinded(role) else View.BLINDED


@dataclass(frozen=True)
class RoutePermission:
    method: str
    template: str
    roles: frozenset[Role]
    credential: Credential = Credential.BEARER
    # Reads or writes one participant's data: the gateway records who did it.
    participant_data: bool = False
    # A capability every allowed role must hold (e.g. the route returns
    # unblinding data to every caller: no blinded shape exists).
    requires: Capability | None = None
    # Every listed role must approve before the service acts (two-person rule).
    together: bool = False
    # Takes a large upload (text/csv), streamed to the service after authentication.
    upload: bool = False
    note: str = ""
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", _template_pattern(self.template))


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    regex = "".join(
        (".+" if p.endswith(":path}") else "[^/]+") if p.startswith("{") else re.escape(p) for p in parts
    )
    return re.compile(f"^{regex}$")


def _rule(method: str, template: str, *roles: Role, **options: object) -> RoutePermission:
    return RoutePermission(method, template, frozenset(roles), **options)  # type: ignore[arg-type]


R = Role
SERVICES = ("allocation", "randomization", "notifications", "safety", "reports")

_REPORT_READERS = (R.COORDINATOR, R.STUDY_MANAGER, R.STATISTICIAN, R.MONITOR, R.DSMB)

PERMISSIONS: tuple[RoutePermission, ...] = (
    # The gateway itself
    _rule("GET", "/healthz", credential=Credential.NONE, note="liveness probe"),
    _rule("GET", "/readyz", credential=Credential.NONE, note="readiness probe"),
    _rule("GET", "/openapi.json", credential=Credential.NONE),
    _rule("GET", "/metrics", R.OPS),
    _rule("GET", "/api/v1/ops/health", R.OPS, note="every service's readiness"),
    _rule("GET", "/api/v1/ops/dead-letters", R.OPS),
    _rule("POST", "/api/v1/ops/dead-letters/{seq}/replay", R.OPS, note="audited"),
    _rule("POST", "/redcap/det", R.REDCAP, credential=Credential.REDCAP_SECRET),
    _rule("GET", "/internal/redcap/survey-link", credential=Credential.SURVEY_LINK_SECRET,
          participant_data=True, note="notifications only: a participant's survey link"),
    _rule("GET", "/internal/redcap/survey-queue-link", credential=Credential.SURVEY_LINK_SECRET,
          participant_data=True, note="notifications only: a participant's survey-queue link"),
    _rule("GET", "/api/v1/audit", R.MONITOR),
    _rule("GET", "/api/v1/audit/verify", R.MONITOR),
    _rule("GET", "/api/v1/audit/heads", R.MONITOR, R.OPS, note="chain heads the gateway witnessed"),
    _rule("GET", "/api/v1/keys", R.ADMIN),
    _rule("POST", "/api/v1/keys", R.ADMIN),
    _rule("POST", "/api/v1/keys/{key_id}/revoke", R.ADMIN),
    # Each service's own audit trail, read by the gateway on a monitor's behalf
    *(
        _rule("GET", f"/api/v1/{service}/v1/audit{suffix}", R.MONITOR)
        for service in SERVICES
        for suffix in ("", "/verify", "/witnessed")
    ),
    # Allocation: cluster is unblinding data
    _rule(
        "POST",
        "/api/v1/allocation/v1/predictions",
        R.STUDY_MANAGER,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
    ),
    _rule(
        "GET",
        "/api/v1/allocation/v1/predictions/{record}",
        R.STUDY_MANAGER,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
    ),
    _rule("GET", "/api/v1/allocation/v1/models/active", R.STUDY_MANAGER, R.STATISTICIAN, R.MONITOR),
    # Randomization: lists
    _rule("GET", "/api/v1/randomization/v1/lists", R.STATISTICIAN, R.MONITOR),
    _rule("POST", "/api/v1/randomization/v1/lists", R.STATISTICIAN, note="generate"),
    _rule("POST", "/api/v1/randomization/v1/lists/import", R.STATISTICIAN, upload=True),
    _rule("POST", "/api/v1/randomization/v1/lists/{list_id}/seal", R.STATISTICIAN),
    _rule("POST", "/api/v1/randomization/v1/lists/{list_id}/extend", R.STATISTICIAN),
    _rule("GET", "/api/v1/randomization/v1/lists/{list_id}/commitment", R.STATISTICIAN, R.MONITOR),
    _rule(
        "POST",
        "/api/v1/randomization/v1/lists/{list_id}/close",
        R.STUDY_MANAGER,
        note="end allocation, with a reason: the list may be unsealed only after this",
    ),
    _rule(
        "POST",
        "/api/v1/randomization/v1/lists/{list_id}/unseal",
        R.STATISTICIAN,
        R.MONITOR,
        together=True,
        requires=Capability.UNSEAL_LIST_AT_CLOSURE,
        note="only after the study manager closed allocation; request and confirmation each "
        "with a reason; answers whether the list matches its commitment, never its slots",
    ),
    _rule(
        "GET",
        "/api/v1/randomization/v1/lists/{list_id}/unsealed",
        R.STUDY_MANAGER,
        R.DSMB,
        requires=Capability.UNBLINDED_VIEW,
        note="the unsealed list (seed, every slot's arm): unblinded roles only",
    ),
    # Randomization: allocations
    _rule(
        "GET",
        "/api/v1/randomization/v1/allocations/unblinded",
        R.STUDY_MANAGER,
        R.DSMB,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
        note="every allocation with arm and cluster (the DSMB report reads it); audited",
    ),
    _rule(
        "GET",
        "/api/v1/randomization/v1/allocations/{record}",
        R.COORDINATOR,
        R.STUDY_MANAGER,
        R.DSMB,
        participant_data=True,
        note="never the assessor: the module is hidden from outcome assessment (they read "
        "schedules and completion from notifications)",
    ),
    _rule(
        "POST",
        "/api/v1/randomization/v1/allocations",
        R.STUDY_MANAGER,
        participant_data=True,
        note="manual allocation when REDCap or the bus is down",
    ),
    _rule(
        "POST",
        "/api/v1/randomization/v1/allocations/{record}/emergency-unblinding",
        R.STUDY_MANAGER,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
    ),
    _rule("GET", "/api/v1/randomization/v1/reports/balance", R.STUDY_MANAGER, R.DSMB, R.MONITOR),
    # Randomization: later stages (SMART); a stage's option is blinded like an arm
    _rule(
        "GET",
        "/api/v1/randomization/v1/stages/allocations",
        R.STUDY_MANAGER,
        R.DSMB,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
        note="every later-stage allocation with its option and outcome; audited",
    ),
    _rule(
        "POST",
        "/api/v1/randomization/v1/stages/allocations",
        R.STUDY_MANAGER,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
        note="manual stage decision when REDCap or the bus is down (the option is returned)",
    ),
    _rule(
        "GET",
        "/api/v1/randomization/v1/stages/balance",
        R.STUDY_MANAGER,
        R.DSMB,
        requires=Capability.UNBLINDED_VIEW,
        note="options per stage stratum (outcome x first-stage arm)",
    ),
    _rule(
        "GET",
        "/api/v1/randomization/v1/allocations/{record}/stages",
        R.COORDINATOR,
        R.STUDY_MANAGER,
        R.DSMB,
        participant_data=True,
        note="blinded roles: stage and number only; unblinded: the option too (audited)",
    ),
    # Randomization: groups (group randomization; members are records)
    _rule(
        "GET",
        "/api/v1/randomization/v1/groups",
        R.COORDINATOR,
        R.STUDY_MANAGER,
        R.DSMB,
        participant_data=True,
        note="groups and members; arm and stratum only for unblinded roles (audited)",
    ),
    _rule(
        "GET",
        "/api/v1/randomization/v1/groups/{group_id}",
        R.COORDINATOR,
        R.STUDY_MANAGER,
        R.DSMB,
        participant_data=True,
    ),
    _rule(
        "POST",
        "/api/v1/randomization/v1/groups/{group_id}/close",
        R.COORDINATOR,
        R.STUDY_MANAGER,
        participant_data=True,
        note="randomize a pre-formed group; its members inherit its arm (blinded callers get "
        "the module only)",
    ),
    _rule(
        "POST",
        "/api/v1/randomization/v1/groups/{group_id}/members/{record}/admit",
        R.STUDY_MANAGER,
        participant_data=True,
        requires=Capability.UNBLINDED_VIEW,
        note="a member who joined after the close inherits the group's arm; reason required",
    ),
    # Notifications (blinded: the service holds no arm, cluster or module)
    _rule(
        "GET",
        "/api/v1/notifications/v1/schedules/{record}",
        R.COORDINATOR,
        R.ASSESSOR,
        R.STUDY_MANAGER,
        participant_data=True,
    ),
    _rule("GET", "/api/v1/notifications/v1/tasks", R.COORDINATOR, participant_data=True),
    _rule("POST", "/api/v1/notifications/v1/tasks/{task_id}/claim", R.COORDINATOR, participant_data=True),
    _rule("POST", "/api/v1/notifications/v1/tasks/{task_id}/outcome", R.COORDINATOR, participant_data=True),
    _rule("GET", "/api/v1/notifications/v1/tasks/{task_id}/letter", R.COORDINATOR, participant_data=True),
    _rule("GET", "/api/v1/notifications/v1/follow-ups", R.COORDINATOR, participant_data=True),
    _rule("POST", "/api/v1/notifications/v1/follow-ups/{follow_up_id}/resolve", R.COORDINATOR,
          participant_data=True),
    _rule(
        "POST",
        "/api/v1/notifications/v1/participants/{record}/opt-out",
        R.COORDINATOR,
        participant_data=True,
        note="the participant wants no more messages on a channel",
    ),
    _rule(
        "GET",
        "/api/v1/notifications/v1/messages",
        R.COORDINATOR,
        R.STUDY_MANAGER,
        R.MONITOR,
        participant_data=True,
        note="delivery states only, never message text or addresses",
    ),
    _rule("GET", "/api/v1/notifications/v1/reports/retention", R.COORDINATOR, R.STUDY_MANAGER, R.MONITOR),
    _rule(
        "POST",
        "/api/v1/notifications/v1/sms/callbacks",
        credential=Credential.NONE,
        note="SMS provider delivery status: no bearer token; the service verifies the "
        "provider's HMAC signature and timestamp (X-Signature) and applies each callback once",
    ),
    # Safety
    _rule(
        "POST",
        "/api/v1/safety/v1/adverse-events",
        R.COORDINATOR,
        R.SAFETY_OFFICER,
        participant_data=True,
        note="report an AE",
    ),
    _rule("GET", "/api/v1/safety/v1/adverse-events", R.SAFETY_OFFICER, participant_data=True),
    _rule("GET", "/api/v1/safety/v1/adverse-events/{case_id}", R.SAFETY_OFFICER, participant_data=True),
    _rule(
        "POST",
        "/api/v1/safety/v1/adverse-events/{case_id}/follow-ups",
        R.COORDINATOR,
        R.SAFETY_OFFICER,
        participant_data=True,
    ),
    _rule(
        "GET", "/api/v1/safety/v1/adverse-events/{case_id}/versions", R.SAFETY_OFFICER, participant_data=True
    ),
    _rule(
        "GET",
        "/api/v1/safety/v1/adverse-events/{case_id}/e2b",
        R.SAFETY_OFFICER,
        participant_data=True,
        note="ICH E2B(R3) case export",
    ),
    _rule(
        "GET",
        "/api/v1/safety/v1/candidates",
        R.SAFETY_OFFICER,
        participant_data=True,
        note="candidate AEs from negative-effects questionnaires",
    ),
    _rule(
        "POST", "/api/v1/safety/v1/candidates/{candidate_id}/triage", R.SAFETY_OFFICER, participant_data=True
    ),
    _rule("GET", "/api/v1/safety/v1/obligations", R.SAFETY_OFFICER),
    _rule("POST", "/api/v1/safety/v1/obligations/{obligation_id}/acknowledge", R.SAFETY_OFFICER),
    _rule("POST", "/api/v1/safety/v1/obligations/{obligation_id}/sent", R.SAFETY_OFFICER),
    _rule("GET", "/api/v1/safety/v1/reports/blinded", R.SAFETY_OFFICER, R.MONITOR),
    _rule(
        "GET",
        "/api/v1/safety/v1/reports/unblinded",
        R.DSMB,
        requires=Capability.UNBLINDED_VIEW,
        note="by arm; safety asks randomization for the arms with the DSMB member's token",
    ),
    _rule("GET", "/api/v1/safety/v1/reports/dsmb", R.DSMB, requires=Capability.UNBLINDED_VIEW),
    # Reports: aggregates only (no participant rows). Blinded roles get pooled figures;
    # unblinded roles (study manager, DSMB) also get them per arm, and that read is audited.
    *(
        _rule("GET", f"/api/v1/reports/v1/{report}", *roles, note=note)
        for report, roles, note in (
            ("flow", _REPORT_READERS, "CONSORT flow: JSON, CSV or SVG; per arm for unblinded roles"),
            ("feasibility", _REPORT_READERS, "criteria with Wilson 95% CI and verdict"),
            ("recruitment", _REPORT_READERS, "per week and site, projections"),
            ("retention", _REPORT_READERS, "per timepoint; reasons for loss"),
            ("acceptability", (R.SAFETY_OFFICER, R.DSMB, R.STUDY_MANAGER, R.MONITOR,
                               R.STATISTICIAN),
             "diary adherence, NEQ and AE counts; per arm for unblinded roles"),
        )
    ),
)


# Routes whose service asks another service with the caller's own token (the DSMB report:
# safety fetches the arms from randomization): the gateway addresses the token to both and
# binds it to the one onward request as well.
ONWARD_ROUTES: dict[str, dict[str, str]] = {
    "/api/v1/safety/v1/reports/unblinded": {"randomization": "GET /v1/allocations/unblinded"},
    "/api/v1/safety/v1/reports/dsmb": {"randomization": "GET /v1/allocations/unblinded"},
    # per-arm figures for unblinded callers: reports asks randomization for the arms
    "/api/v1/reports/v1/flow": {"randomization": "GET /v1/allocations/unblinded"},
    "/api/v1/reports/v1/acceptability": {"randomization": "GET /v1/allocations/unblinded"},
}


# Keys for these roles are never issued over the API (one admin alone would hold the arms,
# or both halves of a two-person rule): only with `tailor keys create` on the server.
PRIVILEGED_KEY_ROLES = UNBLINDED_ROLES | frozenset(
    role for rule in PERMISSIONS if rule.together for role in rule.roles)


def _specificity(rule: RoutePermission) -> tuple[int, int]:
    # A literal segment beats a parameter: `/audit/verify` before `/audit/{id}`.
    segments = rule.template.strip("/").split("/")
    literals = sum(not s.startswith("{") for s in segments)
    return (literals, len(segments))


def _ordered(rules: Iterable[RoutePermission]) -> tuple[RoutePermission, ...]:
    if rules is PERMISSIONS:
        return _PERMISSIONS_ORDERED
    return tuple(sorted(rules, key=_specificity, reverse=True))


_PERMISSIONS_ORDERED = tuple(sorted(PERMISSIONS, key=_specificity, reverse=True))


def find_rule(
    method: str, route: str, rules: Iterable[RoutePermission] = PERMISSIONS
) -> RoutePermission | None:
    """The rule for a concrete path or a route template; None when the table has none."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    for rule in _ordered(rules):
        if rule.method == method and (rule.template == route or rule.pattern.match(route)):
            return rule
    return None


def is_allowed(
    role: Role | None,
    method: str,
    route: str,
    *,
    credential: Credential | None = None,
    rules: Iterable[RoutePermission] = PERMISSIONS,
) -> bool:
    """Deny unless the table says yes. `role` None means no credentials at all.

    Pass `credential` to also require that the caller authenticated the way the
    route expects (a bearer token never opens the DET route, and vice versa).
    """
    rule = find_rule(method, route, rules)
    if rule is None:
        return False
    if rule.credential is Credential.NONE:
        return True
    if credential is not None and credential is not rule.credential:
        return False
    return role is not None and role in rule.roles


def is_allowed_for_service(role: Role | None, method: str, service: str, path: str) -> bool:
    """A service checks its own path (`/v1/...`) against the gateway's table."""
    return is_allowed(role, method, f"/api/v1/{service}{path}", credential=Credential.BEARER)
