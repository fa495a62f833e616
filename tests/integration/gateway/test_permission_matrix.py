"""The permission matrix, generated from the table: every public route is called with
every role, with no credentials, an expired key and a revoked key through the gateway, and
every service route is called directly with forged internal tokens. A route that any app
serves without a rule fails here, and so does a rule that names a route nobody serves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.auth.permissions import missing_routes
from gateway.console.rules import console_rule
from gateway.security import NOT_PUBLIC
from services.core.internal_token import (
    HEADER,
    Caller,
    InternalTokenSigner,
    ensure_keypair,
    load_private_key,
    route_of,
)
from services.core.roles import (
    BEARER_ROLES,
    PERMISSIONS,
    SERVICES,
    Credential,
    Role,
    RoutePermission,
    find_rule,
)

from .support import DET_SECRET, Edge, fill

# Routes the kernel gives every service for probes and scraping inside the cluster; the
# gateway never forwards them (they have no rule), which is what keeps them internal.
SERVICE_INTERNAL = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
                              "/docs/oauth2-redirect", "/redoc"})
REFUSED = (401, 403)


def _ids(rule: RoutePermission) -> str:
    return f"{rule.method} {rule.template}"


def _endpoints(app: object) -> list[tuple[str, str]]:
    return missing_routes(app, rules=())  # with an empty table, every endpoint is missing


def _gateway_endpoints(edge: Edge) -> list[tuple[str, str]]:
    proxied = tuple(f"/api/v1/{s}/{{path:path}}" for s in SERVICES)
    return [(m, p) for m, p in _endpoints(edge.gateway)
            if (m, p) not in NOT_PUBLIC and p not in proxied]


def _service_endpoints(edge: Edge) -> list[tuple[str, str]]:
    return [(m, f"/api/v1/{name}{p}") for name, app in edge.service_apps.items()
            for m, p in _endpoints(app) if p not in SERVICE_INTERNAL]


def test_every_served_route_has_a_rule(edge: Edge) -> None:
    served = _gateway_endpoints(edge) + _service_endpoints(edge)
    assert len(served) > len(SERVICES) * 3
    # Console pages are not API routes: the console checks its session and, per page, the
    # roles this table gives the API routes the page reads.
    assert [(m, p) for m, p in served if find_rule(m, p) is None and console_rule(m, p) is None] == []
    assert all(console_rule(m, p) is None for rule in PERMISSIONS for m, p in [(rule.method, rule.template)])


def test_every_rule_names_a_served_route(edge: Edge) -> None:
    served = set(_gateway_endpoints(edge) + _service_endpoints(edge))
    assert [_ids(r) for r in PERMISSIONS if (r.method, r.template) not in served] == []


@pytest.fixture(scope="module")
def dead_keys(edge: Edge) -> dict[Role, tuple[str, str]]:
    """Per role: a key that expired an hour ago, and a key that was revoked."""
    past = datetime.now(UTC) - timedelta(days=2)
    keys = {}
    for role in BEARER_ROLES:
        _id, expired = edge.issue(role, f"expired {role}", now=past,
                                  expires_at=past + timedelta(days=1, hours=23))
        revoked_id, revoked = edge.issue(role, f"revoked {role}")
        edge.revoke(revoked_id)
        keys[role] = (expired, revoked)
    return keys


def _body(rule: RoutePermission) -> dict[str, object]:
    return {"json": {}} if rule.method in ("POST", "PUT", "PATCH") else {}


@pytest.mark.parametrize("rule", PERMISSIONS, ids=_ids)
def test_gateway_answers_each_role_as_the_table_says(edge: Edge, dead_keys: dict, rule: RoutePermission
                                                     ) -> None:
    path = fill(rule.template)
    seen = {role: edge.call(rule.method, path, role, **_body(rule)).status_code
            for role in sorted(BEARER_ROLES)}
    anonymous = edge.call(rule.method, path, **_body(rule)).status_code
    if rule.credential is Credential.NONE:  # credentials change nothing: the route decides
        assert set(seen.values()) == {anonymous}, (seen, anonymous)
        return
    for role, status in seen.items():
        if rule.credential is Credential.BEARER and role in rule.roles:
            assert status not in REFUSED, (role, status)
        else:  # a bearer key never opens the REDCap route, nor a route of another role
            assert status == 403, (role, status)
    assert anonymous == (401 if rule.credential is Credential.BEARER else 403)
    if rule.credential is Credential.BEARER:
        for key in dead_keys[sorted(rule.roles)[0]]:
            status = edge.call(rule.method, path, headers={"Authorization": f"Bearer {key}"},
                               **_body(rule)).status_code
            assert status == 401, status
        # The DET secret opens the DET only.
        with_secret = edge.call(rule.method, f"{path}?secret={DET_SECRET}", **_body(rule))
        assert with_secret.status_code == 401


def test_the_det_secret_opens_the_det(edge: Edge) -> None:
    [det] = [r for r in PERMISSIONS if r.credential is Credential.REDCAP_SECRET]
    wrong = edge.call(det.method, f"{det.template}?secret=guess", data={"record": "1"})
    right = edge.call(det.method, f"{det.template}?secret={DET_SECRET}", data={"record": "1"})
    assert wrong.status_code == 403
    assert right.status_code not in REFUSED  # refused for its form fields, not its caller


SERVICE_RULES = [r for r in PERMISSIONS if r.credential is Credential.BEARER
                 and r.template.split("/")[3:4] and r.template.split("/")[3] in SERVICES]


def _unsigned(claims: dict) -> str:
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode()
    body = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{body}."


@pytest.mark.parametrize("rule", SERVICE_RULES, ids=_ids)
def test_service_reached_directly_needs_the_gateways_token(edge: Edge, rule: RoutePermission) -> None:
    service = rule.template.split("/")[3]
    local = fill(rule.template).removeprefix(f"/api/v1/{service}")
    url = edge.service_urls[service] + local
    bound = {service: route_of(rule.method, local)}
    keys = ensure_keypair(edge.home / "keys")
    real = InternalTokenSigner(load_private_key(keys.private_key.read_bytes()))
    forged = InternalTokenSigner(Ed25519PrivateKey.generate())
    allowed = sorted(rule.roles)[0]
    caller = Caller(subject="intruder", role=allowed)
    now = datetime.now(UTC)
    other = next(s for s in SERVICES if s != service)
    tokens = {
        "none": None,
        "forged": forged.sign(caller, audience=service),
        "alg none": _unsigned({"iss": "tailor-gateway", "aud": service, "sub": "intruder",
                               "role": allowed.value, "iat": int(now.timestamp()),
                               "exp": int(now.timestamp()) + 60}),
        "other audience": real.sign(caller, audience=other, routes={other: bound[service]}),
        "expired": real.sign(caller, audience=service, now=now - timedelta(minutes=10),
                             routes=bound),
        "unbound": real.sign(caller, audience=service),
        "other route": real.sign(caller, audience=service,
                                 routes={service: route_of(rule.method, local + "x")}),
        "garbage": "Bearer not-a-token",
    }
    for name, token in tokens.items():
        headers = {HEADER: token} if token else {}
        response = edge.http.request(rule.method, url, headers=headers, **_body(rule))
        assert response.status_code == 401, (name, response.status_code, response.text[:200])
    for role in sorted(BEARER_ROLES):
        token = real.sign(Caller(subject="via-gateway", role=role), audience=service, routes=bound)
        status = edge.http.request(rule.method, url, headers={HEADER: token}, **_body(rule)).status_code
        assert (status not in REFUSED) if role in rule.roles else status == 403, (role, status)
        again = edge.http.request(rule.method, url, headers={HEADER: token}, **_body(rule))
        assert again.status_code == 401, (role, "a replayed token")
