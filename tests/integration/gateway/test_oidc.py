"""OIDC bearer tokens at the HTTP edge: a token from the configured issuer, for the
configured audience, signed by a key of its JWKS, naming one role, is let in; any other
token is a 401 that does not say why."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .support import Edge, IdentityProvider

AUDIT_VERIFY = "/api/v1/audit/verify"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac_signed(claims: dict, kid: str, secret: bytes) -> str:
    """Key confusion: HS256 "signed" with the issuer's public key as the secret."""
    signing_input = (f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}."
                     f"{_b64(json.dumps(claims).encode())}")
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(digest)}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_from_the_identity_provider_lets_its_role_in(edge: Edge) -> None:
    response = edge.call("GET", AUDIT_VERIFY, headers=_bearer(edge.idp.token("monitor")))
    assert response.status_code == 200, response.text
    wrong_role = edge.call("GET", AUDIT_VERIFY, headers=_bearer(edge.idp.token("coordinator")))
    assert wrong_role.status_code == 403


def _refused_tokens(idp: IdentityProvider) -> dict[str, str]:
    now = int(datetime.now(UTC).timestamp())
    stranger = IdentityProvider(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    public_pem = idp.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = idp.claims("monitor")
    return {
        "wrong issuer": idp.token("monitor", iss="https://evil.example.org/realms/trial"),
        "wrong audience": idp.token("monitor", aud="another-api"),
        "expired": idp.token("monitor", iat=now - 3600, exp=now - 600),
        "not yet valid": idp.token("monitor", nbf=now + 3600),
        "alg none": f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}."
                    f"{_b64(json.dumps(claims).encode())}.",
        "HMAC with the public key": _hmac_signed(claims, idp.kid, public_pem),
        "signed by another key": stranger.token("monitor"),
        "two roles": idp.token(None, roles=["monitor", "study_manager"]),
        "no role": idp.token(None),
        "the redcap role": idp.token("redcap"),
        "no subject": idp.token("monitor", sub=None),
        "tampered": idp.token("monitor")[:-4] + "AAAA",
        "garbage": "not.a.token",
    }


CASES = ("wrong issuer", "wrong audience", "expired", "not yet valid", "alg none",
         "HMAC with the public key", "signed by another key", "two roles", "no role",
         "the redcap role", "no subject", "tampered", "garbage")


def test_every_refusal_case_is_tested(edge: Edge) -> None:
    assert set(_refused_tokens(edge.idp)) == set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_a_token_the_gateway_cannot_trust_is_a_401(edge: Edge, case: str) -> None:
    token = _refused_tokens(edge.idp)[case]
    response = edge.call("GET", AUDIT_VERIFY, headers=_bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "field"}  # no reason, no trace


def test_the_scheme_must_be_bearer(edge: Edge) -> None:
    token = edge.keys[next(iter(edge.keys))]
    for header in (f"Basic {token}", token, "Bearer", f"Token {token}"):
        assert edge.call("GET", "/api/v1/keys", headers={"Authorization": header}).status_code == 401
