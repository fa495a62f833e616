from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import services.core.internal_token as it
from services.core.internal_token import (
    HEADER,
    Caller,
    InternalTokenSigner,
    InternalTokenVerifier,
    ReplayedTokenError,
    WrongRouteError,
    caller_from_header,
    route_of,
)
from services.core.roles import Role

CALLER = Caller(
    subject="apikey:0123456789ab",
    role=Role.MONITOR,
    key_id="0123456789ab",
    key_name="trials unit monitor",
    request_id="req-42",
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def _join(header: dict, payload: dict, signature: str) -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), signature])


@pytest.fixture
def signer(gateway_key: Ed25519PrivateKey) -> InternalTokenSigner:
    return InternalTokenSigner(gateway_key)


@pytest.fixture
def verifier(gateway_key: Ed25519PrivateKey) -> InternalTokenVerifier:
    return InternalTokenVerifier(gateway_key.public_key(), audience="randomization")


def test_round_trip_returns_the_caller_the_gateway_signed(signer, verifier):
    token = signer.sign(CALLER, audience="randomization")
    assert verifier.verify(token) == CALLER


def test_header_helper_accepts_bare_and_bearer_values(signer, verifier):
    assert caller_from_header(signer.sign(CALLER, audience="randomization"), verifier) == CALLER
    token = signer.sign(CALLER, audience="randomization")  # each token is good once
    assert caller_from_header(f"Bearer {token}", verifier) == CALLER


@pytest.mark.parametrize("value", [None, "", "   ", "Bearer "])
def test_missing_token_is_refused(verifier, value):
    with pytest.raises(it.MissingTokenError):
        caller_from_header(value, verifier)


def test_expired_token_is_refused(signer, verifier):
    token = signer.sign(CALLER, audience="randomization", now=datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(it.ExpiredTokenError):
        verifier.verify(token)


def test_token_for_another_service_is_refused(signer, verifier):
    token = signer.sign(CALLER, audience="safety")
    with pytest.raises(it.WrongAudienceError):
        verifier.verify(token)


def test_token_from_another_issuer_is_refused(gateway_key, verifier):
    token = InternalTokenSigner(gateway_key, issuer="not-the-gateway").sign(CALLER, audience="randomization")
    with pytest.raises(it.WrongIssuerError):
        verifier.verify(token)


def test_token_signed_by_another_key_under_the_gateway_key_id_is_refused(signer, verifier):
    genuine_header, _, _ = _segments(signer.sign(CALLER, audience="randomization"))
    forged = InternalTokenSigner(Ed25519PrivateKey.generate()).sign(CALLER, audience="randomization")
    _, payload, signature = _segments(forged)
    with pytest.raises(it.InvalidSignatureError):
        verifier.verify(_join(genuine_header, payload, signature))


def test_token_signed_by_an_unknown_key_is_refused(verifier):
    forged = InternalTokenSigner(Ed25519PrivateKey.generate()).sign(CALLER, audience="randomization")
    with pytest.raises(it.InvalidSignatureError):
        verifier.verify(forged)


def test_tampered_role_breaks_the_signature(signer, verifier):
    header, payload, signature = _segments(signer.sign(CALLER, audience="randomization"))
    payload["role"] = Role.STUDY_MANAGER.value
    with pytest.raises(it.InvalidSignatureError):
        verifier.verify(_join(header, payload, signature))


def test_unsigned_alg_none_token_is_refused(signer, verifier):
    header, payload, _ = _segments(signer.sign(CALLER, audience="randomization"))
    header["alg"] = "none"
    with pytest.raises(it.UnsupportedAlgorithmError):
        verifier.verify(_join(header, payload, ""))


def test_hmac_token_keyed_with_the_public_key_is_refused(gateway_key, signer, verifier):
    header, payload, _ = _segments(signer.sign(CALLER, audience="randomization"))
    header["alg"] = "HS256"
    public_pem = gateway_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = _join(header, payload, "").rstrip(".")
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(it.UnsupportedAlgorithmError):
        verifier.verify(f"{signing_input}.{_b64(mac)}")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
def test_malformed_token_is_refused(verifier, token):
    with pytest.raises((it.MalformedTokenError, it.UnsupportedAlgorithmError)):
        verifier.verify(token)


def test_long_lived_token_is_refused_even_when_validly_signed(gateway_key, verifier):
    token = InternalTokenSigner(gateway_key, ttl=timedelta(hours=1)).sign(CALLER, audience="randomization")
    with pytest.raises(it.InvalidClaimsError, match="lifetime"):
        verifier.verify(token)


def test_validly_signed_token_with_an_unknown_role_is_refused(gateway_key, verifier):
    now = int(datetime.now(UTC).timestamp())
    token = jwt.encode(
        {
            "iss": it.ISSUER,
            "aud": "randomization",
            "sub": "x",
            "role": "superuser",
            "iat": now,
            "exp": now + 30,
            "jti": "j-1",
        },
        gateway_key,
        algorithm="EdDSA",
        headers={"kid": it.key_id_of(gateway_key.public_key())},
    )
    with pytest.raises(it.InvalidClaimsError, match="role"):
        verifier.verify(token)


def test_every_failure_is_a_value_error_naming_the_header(verifier):
    with pytest.raises(ValueError) as caught:
        caller_from_header("garbage", verifier)
    assert isinstance(caught.value, it.InternalTokenError)
    assert caught.value.field == HEADER


def test_verifier_accepts_old_and_new_keys_during_rotation(gateway_key):
    new_key = Ed25519PrivateKey.generate()
    verifier = InternalTokenVerifier([gateway_key.public_key(), new_key.public_key()], audience="safety")
    for key in (gateway_key, new_key):
        token = InternalTokenSigner(key).sign(CALLER, audience="safety")
        assert verifier.verify(token).role is Role.MONITOR


def test_ensure_keypair_writes_owner_only_files_and_reuses_them(tmp_path: Path):
    files = it.ensure_keypair(tmp_path / "keys")
    for path in (files.private_key, files.public_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = it.load_private_key(files.private_key.read_bytes())
    public = it.load_public_key(files.public_key.read_bytes())
    token = InternalTokenSigner(private).sign(CALLER, audience="safety")
    assert InternalTokenVerifier(public, audience="safety").verify(token) == CALLER

    again = it.ensure_keypair(tmp_path / "keys")
    assert again.private_key.read_bytes() == files.private_key.read_bytes()


def test_keys_load_from_inline_env_or_mounted_file(tmp_path: Path):
    files = it.ensure_keypair(tmp_path)
    from_file = it.private_key_from_env({"TAILOR_INTERNAL_TOKEN_PRIVATE_KEY_FILE": str(files.private_key)})
    inline = it.public_key_from_env({"TAILOR_INTERNAL_TOKEN_PUBLIC_KEY": files.public_key.read_text()})
    assert it.key_id_of(from_file.public_key()) == it.key_id_of(inline)


def test_missing_or_wrong_key_configuration_names_the_setting(tmp_path: Path):
    with pytest.raises(it.InternalKeyError) as missing:
        it.public_key_from_env({})
    assert missing.value.field == "TAILOR_INTERNAL_TOKEN_PUBLIC_KEY"
    with pytest.raises(it.InternalKeyError) as unreadable:
        it.private_key_from_env({"TAILOR_INTERNAL_TOKEN_PRIVATE_KEY_FILE": str(tmp_path / "absent")})
    assert unreadable.value.field == "TAILOR_INTERNAL_TOKEN_PRIVATE_KEY_FILE"
    with pytest.raises(it.InternalKeyError, match="PEM"):
        it.load_public_key(b"not a key")


def test_non_ed25519_key_is_refused(rsa_key):
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(it.InternalKeyError, match="Ed25519"):
        it.load_public_key(pem)


def test_module_stays_framework_free():
    tree = ast.parse(Path(it.__file__).read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert imported.isdisjoint({"fastapi", "starlette"})
    assert "jwt" in imported  # the check sees imports at all


def test_header_with_extra_words_is_refused(signer, verifier):
    token = signer.sign(CALLER, audience="randomization")
    with pytest.raises(it.MalformedTokenError):
        caller_from_header(f"Bearer {token} extra", verifier)


def test_a_token_opens_only_the_request_it_was_signed_for(signer, verifier):
    routes = {"randomization": route_of("GET", "/v1/allocations/PP-0001")}
    token = signer.sign(CALLER, audience="randomization", routes=routes)
    for method, path in (("GET", "/v1/allocations/PP-0002"), ("POST", "/v1/allocations/PP-0001"),
                         ("GET", "/v1/allocations/unblinded")):
        with pytest.raises(WrongRouteError):
            verifier.verify(token, method=method, path=path)
    assert verifier.verify(token, method="HEAD", path="/v1/allocations/PP-0001") == CALLER
    unbound = signer.sign(CALLER, audience="randomization")
    with pytest.raises(WrongRouteError):
        verifier.verify(unbound, method="GET", path="/v1/allocations/PP-0001")


def test_a_replayed_token_is_refused(signer, verifier):
    token = signer.sign(CALLER, audience="randomization",
                        routes={"randomization": "GET /v1/lists"})
    assert verifier.verify(token, method="GET", path="/v1/lists") == CALLER
    with pytest.raises(ReplayedTokenError):
        verifier.verify(token, method="GET", path="/v1/lists")
    with pytest.raises(ReplayedTokenError):
        caller_from_header(token, verifier, method="GET", path="/v1/lists")


def test_an_onward_token_is_bound_for_each_audience(gateway_key, signer):
    routes = {"safety": "GET /v1/reports/dsmb", "randomization": "GET /v1/allocations/unblinded"}
    token = signer.sign(CALLER, audience=["safety", "randomization"], routes=routes)
    safety = InternalTokenVerifier(gateway_key.public_key(), audience="safety")
    randomization = InternalTokenVerifier(gateway_key.public_key(), audience="randomization")
    assert safety.verify(token, method="GET", path="/v1/reports/dsmb") == CALLER
    assert randomization.verify(token, method="GET", path="/v1/allocations/unblinded") == CALLER
