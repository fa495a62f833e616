from __future__ import annotations

from collections import Counter

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import Mount

from gateway.auth.permissions import allowed_roles, missing_routes
from services.core.roles import (
    BEARER_ROLES,
    PERMISSIONS,
    Capability,
    Credential,
    Role,
    RoutePermission,
    View,
    find_rule,
    has_capability,
    is_allowed,
    is_allowed_for_service,
    response_view,
)

CALLERS: list[Role | None] = [*Role, None]


@pytest.mark.parametrize("rule", PERMISSIONS, ids=lambda r: f"{r.method} {r.template}")
def test_every_role_gets_a_definite_answer_on_every_route(rule: RoutePermission):
    for role in CALLERS:
        answer = is_allowed(role, rule.method, rule.template)
        assert answer is (rule.credential is Credential.NONE or role in rule.roles)


def test_table_has_one_entry_per_route():
    counts = Counter((r.method, r.template) for r in PERMISSIONS)
    assert [k for k, n in counts.items() if n > 1] == []


def test_templates_are_well_formed():
    for rule in PERMISSIONS:
        assert rule.template.startswith("/") and not rule.template.endswith("/")
        assert rule.method in {"GET", "POST", "PUT", "PATCH", "DELETE"}
        # A route without roles is open, or opened by a secret that names its one caller.
        assert rule.roles or rule.credential in (Credential.NONE, Credential.SURVEY_LINK_SECRET)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/secret-admin"),
        ("GET", "/"),
        ("DELETE", "/api/v1/audit"),
        ("GET", "/api/v1/audit/"),
        ("POST", "/api/v1/audit/verify"),
        ("GET", "/api/v1/randomization/v1/allocations/R1/extra"),
    ],
)
def test_unknown_route_is_denied_to_everyone(method: str, path: str):
    assert find_rule(method, path) is None
    assert not any(is_allowed(role, method, path) for role in CALLERS)


def test_concrete_paths_match_their_templates():
    path = "/api/v1/randomization/v1/allocations/PP-0042"
    assert is_allowed(Role.COORDINATOR, "GET", path)
    assert is_allowed(Role.DSMB, "GET", path)
    assert not is_allowed(Role.OPS, "GET", path)
    assert not is_allowed(None, "GET", path)
    assert is_allowed(Role.COORDINATOR, "HEAD", path)


def test_literal_segment_wins_over_a_parameter():
    rules = (
        RoutePermission("GET", "/things/{thing_id}", frozenset({Role.COORDINATOR})),
        RoutePermission("GET", "/things/special", frozenset({Role.ADMIN})),
    )
    assert is_allowed(Role.ADMIN, "GET", "/things/special", rules=rules)
    assert not is_allowed(Role.COORDINATOR, "GET", "/things/special", rules=rules)
    assert is_allowed(Role.COORDINATOR, "GET", "/things/42", rules=rules)


def test_path_parameter_spans_segments_only_when_declared():
    rules = (RoutePermission("GET", "/files/{rest:path}", frozenset({Role.OPS})),)
    assert is_allowed(Role.OPS, "GET", "/files/a/b/c", rules=rules)


def test_det_opens_only_with_the_redcap_secret():
    assert is_allowed(Role.REDCAP, "POST", "/redcap/det", credential=Credential.REDCAP_SECRET)
    assert not is_allowed(Role.REDCAP, "POST", "/redcap/det", credential=Credential.BEARER)
    assert not any(is_allowed(role, "POST", "/redcap/det") for role in CALLERS if role is not Role.REDCAP)


def test_redcap_secret_grants_nothing_else():
    for rule in PERMISSIONS:
        if rule.template != "/redcap/det" and rule.credential is not Credential.NONE:
            assert Role.REDCAP not in rule.roles
            assert not is_allowed(
                Role.REDCAP, rule.method, rule.template, credential=Credential.REDCAP_SECRET
            )


def test_the_survey_link_secret_opens_the_internal_survey_link_routes_and_no_person_does():
    internal = {r.template for r in PERMISSIONS if r.credential is Credential.SURVEY_LINK_SECRET}
    assert internal == {"/internal/redcap/survey-link", "/internal/redcap/survey-queue-link"}
    for rule in PERMISSIONS:
        if rule.credential is Credential.SURVEY_LINK_SECRET:
            assert rule.roles == frozenset() and rule.participant_data and rule.method == "GET"
            assert not any(is_allowed(role, rule.method, rule.template, credential=c)
                           for role in CALLERS for c in (None, Credential.BEARER))
        else:
            assert not rule.template.startswith("/internal/")


def test_public_routes_open_with_or_without_credentials():
    for credential in (None, *Credential):
        assert is_allowed(None, "GET", "/healthz", credential=credential)
        assert is_allowed(Role.OPS, "GET", "/readyz", credential=credential)


def test_public_routes_carry_no_data():
    public = {r.template for r in PERMISSIONS if r.credential is Credential.NONE}
    # The SMS provider's delivery callback proves itself by its HMAC signature, not a key.
    assert public == {"/healthz", "/readyz", "/openapi.json", "/api/v1/notifications/v1/sms/callbacks"}
    assert not any(r.participant_data for r in PERMISSIONS if r.credential is Credential.NONE)


def test_participant_data_only_reaches_roles_allowed_to_read_it():
    for rule in PERMISSIONS:
        if rule.participant_data:
            assert all(has_capability(r, Capability.PARTICIPANT_DATA) for r in rule.roles), rule
    for role in (Role.OPS, Role.ADMIN, Role.REDCAP):
        assert not any(role in r.roles for r in PERMISSIONS if r.participant_data)


def test_routes_requiring_a_capability_admit_only_its_holders():
    for rule in PERMISSIONS:
        if rule.requires is not None:
            assert all(has_capability(r, rule.requires) for r in rule.roles), rule


def test_unblinding_routes_are_closed_to_blinded_roles():
    unblinding = [r for r in PERMISSIONS if r.requires is Capability.UNBLINDED_VIEW]
    assert {r.template.rsplit("/", 1)[-1] for r in unblinding} >= {
        "predictions",
        "emergency-unblinding",
        "dsmb",
    }
    for rule in unblinding:
        for role in Role:
            if response_view(role) is View.BLINDED:
                assert not is_allowed(role, rule.method, rule.template)


def test_known_routes_from_the_issues_have_their_roles():
    rnd = "/api/v1/randomization/v1"
    assert allowed_roles("GET", "/api/v1/audit") == {Role.MONITOR}
    assert allowed_roles("GET", "/api/v1/audit/verify") == {Role.MONITOR}
    assert allowed_roles("POST", "/api/v1/allocation/v1/predictions") == {Role.STUDY_MANAGER}
    assert allowed_roles("GET", f"{rnd}/allocations/{{record}}") == {
        Role.COORDINATOR,
        Role.STUDY_MANAGER,
        Role.DSMB,
    }
    for action in ("seal", "extend"):
        assert allowed_roles("POST", f"{rnd}/lists/L1/{action}") == {Role.STATISTICIAN}
    unseal = find_rule("POST", f"{rnd}/lists/L1/unseal")
    assert unseal is not None and unseal.together
    assert unseal.roles == {Role.STATISTICIAN, Role.MONITOR}
    assert allowed_roles("POST", f"{rnd}/allocations/PP-1/emergency-unblinding") == {Role.STUDY_MANAGER}
    assert allowed_roles("GET", "/metrics") == {Role.OPS}
    assert allowed_roles("POST", "/api/v1/keys") == {Role.ADMIN}
    assert allowed_roles("POST", "/api/v1/safety/v1/adverse-events") == {
        Role.COORDINATOR,
        Role.SAFETY_OFFICER,
    }
    assert allowed_roles("GET", "/api/v1/safety/v1/reports/dsmb") == {Role.DSMB}
    assert allowed_roles("GET", "/healthz") == frozenset(Role)
    assert allowed_roles("GET", "/nowhere") == frozenset()


def test_blinding_view_follows_the_role():
    assert {r for r in Role if response_view(r) is View.UNBLINDED} == {Role.STUDY_MANAGER, Role.DSMB}
    assert response_view(Role.STATISTICIAN) is View.BLINDED
    assert has_capability(Role.STATISTICIAN, Capability.UNSEAL_LIST_AT_CLOSURE)
    assert Role.REDCAP not in BEARER_ROLES


def test_service_checks_its_own_path_against_the_same_table():
    assert is_allowed_for_service(Role.DSMB, "GET", "safety", "/v1/reports/dsmb")
    assert not is_allowed_for_service(Role.SAFETY_OFFICER, "GET", "safety", "/v1/reports/dsmb")
    assert not is_allowed_for_service(None, "GET", "safety", "/v1/reports/dsmb")


def test_missing_routes_lists_every_uncovered_route_of_an_app():
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/api/v1/audit")
    def audit() -> dict:
        return {}

    @app.get("/api/v1/keys/{key_id}/secret")
    def leak() -> dict:
        return {}

    @app.api_route("/api/v1/audit/verify", methods=["GET", "DELETE"])
    def verify() -> dict:
        return {}

    sub = APIRouter()

    @sub.get("/v1/reports/dsmb")
    def dsmb() -> dict:
        return {}

    @sub.get("/v1/reports/unlisted")
    def unlisted() -> dict:
        return {}

    inner = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    inner.include_router(sub)
    app.router.routes.append(Mount("/api/v1/safety", app=inner))

    tasks = APIRouter(prefix="/api/v1/notifications/v1")

    @tasks.get("/tasks")
    def list_tasks() -> dict:
        return {}

    @tasks.post("/tasks")
    def make_task() -> dict:
        return {}

    app.include_router(tasks)

    assert sorted(missing_routes(app)) == [
        ("DELETE", "/api/v1/audit/verify"),
        ("GET", "/api/v1/keys/{key_id}/secret"),
        ("GET", "/api/v1/safety/v1/reports/unlisted"),
        ("POST", "/api/v1/notifications/v1/tasks"),
    ]


def test_openapi_document_is_covered_but_interactive_docs_are_not():
    app = FastAPI()  # serves /openapi.json, /docs, /docs/oauth2-redirect and /redoc
    missing = missing_routes(app)
    assert ("GET", "/docs") in missing
    assert ("GET", "/openapi.json") not in missing


def test_app_with_only_tabled_routes_has_nothing_missing():
    app = FastAPI(docs_url=None, redoc_url=None)
    for rule in PERMISSIONS:
        app.add_api_route(rule.template, lambda: {}, methods=[rule.method])
    assert missing_routes(app) == []


def test_the_assessor_never_reads_a_module():
    """DESIGN: the blinded outcome assessor sees schedule and completion only."""
    rnd = "/api/v1/randomization/v1"
    assert not is_allowed(Role.ASSESSOR, "GET", f"{rnd}/allocations/PP-0001")
    assert is_allowed(Role.ASSESSOR, "GET", "/api/v1/notifications/v1/schedules/PP-0001")


def test_unsealing_follows_closure_and_the_list_is_read_by_unblinded_roles_only():
    rnd = "/api/v1/randomization/v1"
    assert allowed_roles("POST", f"{rnd}/lists/L1/close") == {Role.STUDY_MANAGER}
    assert allowed_roles("GET", f"{rnd}/lists/L1/unsealed") == {Role.STUDY_MANAGER, Role.DSMB}
    for role in Role:
        if response_view(role) is View.BLINDED:
            assert not is_allowed(role, "GET", f"{rnd}/lists/L1/unsealed")
