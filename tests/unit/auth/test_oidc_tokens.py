from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.auth import errors
from gateway.auth.oidc import OidcSettings, OidcVerifier, RemoteJwks, StaticJwks, role_from_claim
from services.core.roles import Role

ISSUER = "https://id.example.org/realms/trial"
AUDIENCE = "tailor-gateway"


def _jwk(public_key, kid: str, alg: str) -> dict:
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    return {**algorithm.to_jwk(public_key, as_dict=True), "kid": kid, "alg": alg, "use": "sig"}


@pytest.fixture(scope="module")
def jwks(rsa_key, ec_key) -> dict:
    return {
        "keys": [_jwk(rsa_key.public_key(), "rsa-1", "RS256"), _jwk(ec_key.public_key(), "ec-1", "ES256")]
    }


def _claims(**overrides) -> dict:
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-17", "iat": now, "exp": now + 300, "roles": "monitor"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _token(key, kid="rsa-1", alg="RS256", **claims) -> str:
    return jwt.encode(_claims(**claims), key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


@pytest.fixture
def verifier(jwks) -> OidcVerifier:
    return OidcVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE), StaticJwks(jwks))


def test_valid_rs256_token_gives_the_role_from_the_claim(verifier, rsa_key):
    caller = verifier.verify(_token(rsa_key))
    assert caller.role is Role.MONITOR and caller.subject == "oidc:u-17"


def test_valid_es256_token_is_accepted(verifier, ec_key):
    assert verifier.verify(_token(ec_key, kid="ec-1", alg="ES256")).role is Role.MONITOR


def test_wrong_issuer_is_refused(verifier, rsa_key):
    with pytest.raises(errors.WrongIssuerError):
        verifier.verify(_token(rsa_key, iss="https://evil.example.org"))


def test_wrong_audience_is_refused(verifier, rsa_key):
    with pytest.raises(errors.WrongAudienceError):
        verifier.verify(_token(rsa_key, aud="another-app"))


def test_expired_token_is_refused(verifier, rsa_key):
    past = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())
    with pytest.raises(errors.ExpiredCredentialError):
        verifier.verify(_token(rsa_key, iat=past - 300, exp=past))


def test_small_clock_skew_is_tolerated(verifier, rsa_key):
    just_past = int((datetime.now(UTC) - timedelta(seconds=10)).timestamp())
    assert verifier.verify(_token(rsa_key, iat=just_past - 60, exp=just_past)).role


def test_token_not_yet_valid_is_refused(verifier, rsa_key):
    later = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    with pytest.raises(errors.NotYetValidError):
        verifier.verify(_token(rsa_key, nbf=later))


def test_token_without_subject_is_refused(verifier, rsa_key):
    with pytest.raises(errors.InvalidClaimsError):
        verifier.verify(_token(rsa_key, sub=None))


def test_unsigned_alg_none_token_is_refused(verifier):
    with pytest.raises(errors.UnsupportedAlgorithmError):
        verifier.verify(_unsigned({"alg": "none", "kid": "rsa-1"}, _claims()) + ".")


def test_hs256_keyed_with_the_public_key_is_refused(verifier, rsa_key):
    # Key confusion: a verifier that trusted the header would HMAC-check with the PEM.
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, _claims())
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(errors.UnsupportedAlgorithmError):
        verifier.verify(f"{signing_input}.{_b64(mac)}")


def test_algorithm_that_does_not_match_the_named_key_is_refused(verifier, ec_key):
    with pytest.raises(errors.UnsupportedAlgorithmError):
        verifier.verify(_token(ec_key, kid="rsa-1", alg="ES256"))


def test_token_signed_by_another_key_under_a_known_kid_is_refused(verifier):
    intruder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(errors.InvalidSignatureError):
        verifier.verify(_token(intruder, kid="rsa-1"))


def test_token_naming_an_unknown_key_is_refused(verifier, rsa_key):
    with pytest.raises(errors.InvalidSignatureError):
        verifier.verify(_token(rsa_key, kid="rotated-away"))


def test_garbage_is_refused(verifier):
    with pytest.raises(errors.MalformedCredentialError):
        verifier.verify("not-a-jwt")


@pytest.mark.parametrize("role", ["superuser", "", "REDCAP", "redcap"])
def test_unknown_or_non_bearer_role_is_refused(verifier, rsa_key, role):
    with pytest.raises(errors.RoleNotGrantedError):
        verifier.verify(_token(rsa_key, roles=role))


def test_role_claim_as_list_ignores_unrelated_groups(verifier, rsa_key):
    token = _token(rsa_key, roles=["offline_access", "dsmb", "uma_authorization"])
    assert verifier.verify(token).role is Role.DSMB


@pytest.mark.parametrize("roles", [["coordinator", "study_manager"], [], ["offline_access"], 7])
def test_role_list_must_name_exactly_one_tailor_role(verifier, rsa_key, roles):
    with pytest.raises(errors.RoleNotGrantedError):
        verifier.verify(_token(rsa_key, roles=roles))


def test_missing_role_claim_is_refused(verifier, rsa_key):
    with pytest.raises(errors.RoleNotGrantedError):
        verifier.verify(_token(rsa_key, roles=None))


def test_role_from_a_nested_claim_through_a_role_map(jwks, rsa_key):
    settings = OidcSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        role_claim="realm_access.roles",
        role_map={"trial-monitors": Role.MONITOR},
    )
    verifier = OidcVerifier(settings, StaticJwks(jwks))
    token = _token(rsa_key, roles=None, realm_access={"roles": ["trial-monitors", "x"]})
    assert verifier.verify(token).role is Role.MONITOR
    # With a map, only mapped values count: a bare Tailor role name grants nothing.
    with pytest.raises(errors.RoleNotGrantedError):
        verifier.verify(_token(rsa_key, roles=None, realm_access={"roles": ["monitor"]}))


def test_role_from_claim_maps_a_single_string():
    assert role_from_claim("study_manager", {}) is Role.STUDY_MANAGER


def test_settings_refuse_symmetric_or_unsigned_algorithms():
    for algorithms in ({"HS256"}, {"none"}, {"RS256", "HS256"}, set()):
        with pytest.raises(ValueError, match="algorithms"):
            OidcSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset(algorithms))


class _JwksServer:
    def __init__(self, jwks: dict) -> None:
        body = json.dumps(jwks).encode()
        self.hits = 0
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/certs"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server(jwks, monkeypatch) -> Iterator[_JwksServer]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = _JwksServer(jwks)
    yield server
    server.close()


def test_remote_jwks_is_fetched_once_and_cached(jwks_server, rsa_key, ec_key):
    verifier = OidcVerifier(OidcSettings(issuer=ISSUER, audience=AUDIENCE), RemoteJwks(jwks_server.url))
    assert verifier.verify(_token(rsa_key)).role is Role.MONITOR
    assert verifier.verify(_token(ec_key, kid="ec-1", alg="ES256")).role is Role.MONITOR
    assert verifier.verify(_token(rsa_key, roles="ops")).role is Role.OPS
    assert jwks_server.hits == 1


def test_unreachable_identity_provider_is_reported_as_unavailable(jwks_server, rsa_key):
    url = jwks_server.url
    jwks_server.close()
    verifier = OidcVerifier(
        OidcSettings(issuer=ISSUER, audience=AUDIENCE),
        RemoteJwks(url, timeout=timedelta(seconds=2)),
    )
    with pytest.raises(errors.KeySourceUnavailableError):
        verifier.verify(_token(rsa_key))
