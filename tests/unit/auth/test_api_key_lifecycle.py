from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from gateway.auth import api_keys, errors
from gateway.auth.key_repository import (
    LAST_USED_RESOLUTION,
    KeyNotFoundError,
    KeyRequestError,
    create_key,
    list_keys,
    revoke_key,
    verify_key,
)
from gateway.auth.models import ApiKey
from services.core.roles import Role, UnknownRoleError

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def test_created_key_is_shown_once_and_only_its_hash_is_stored(session: Session):
    issued = create_key(session, name="trials unit", role=Role.MONITOR, now=NOW)
    material = api_keys.parse_token(issued.token)

    row = session.exec(select(ApiKey)).one()
    stored = " ".join(str(v) for v in row.model_dump().values())
    assert material.secret not in stored
    assert row.secret_hash == api_keys.hash_secret(material.key_id, material.secret)
    assert "***" in repr(issued) and material.secret not in repr(issued)
    listed = list_keys(session)
    assert [k.id for k in listed] == [material.key_id]
    assert not any(material.secret in str(v) for v in vars(listed[0]).values())
    assert "secret_hash" not in vars(listed[0])


def test_key_has_recognisable_prefix_and_256_bit_secret():
    tokens = {api_keys.new_key_material().token for _ in range(500)}
    assert len(tokens) == 500
    for token in list(tokens)[:20]:
        prefix, key_id, secret = token.split("_", 2)
        assert prefix == "tlr" and len(key_id) == 12
        assert len(secret) == 43  # 32 random bytes in base64url


def test_valid_key_identifies_its_holder_and_records_last_use(session: Session):
    issued = create_key(session, name="ops robot", role="ops", created_by="apikey:admin", now=NOW)
    caller = verify_key(session, issued.token, now=NOW + timedelta(minutes=5))
    assert caller.role is Role.OPS
    assert caller.key_id == issued.info.id and caller.key_name == "ops robot"
    assert list_keys(session)[0].last_used_at == NOW + timedelta(minutes=5)


def test_last_use_is_written_at_most_once_per_resolution(session: Session):
    issued = create_key(session, name="busy", role=Role.OPS, now=NOW)
    verify_key(session, issued.token, now=NOW)
    verify_key(session, issued.token, now=NOW + LAST_USED_RESOLUTION / 2)
    assert list_keys(session)[0].last_used_at == NOW
    verify_key(session, issued.token, now=NOW + LAST_USED_RESOLUTION)
    assert list_keys(session)[0].last_used_at == NOW + LAST_USED_RESOLUTION


def test_wrong_secret_is_refused(session: Session):
    issued = create_key(session, name="m", role=Role.MONITOR, now=NOW)
    other = api_keys.new_key_material()
    forged = f"tlr_{issued.info.id}_{other.secret}"
    with pytest.raises(errors.WrongSecretError):
        verify_key(session, forged, now=NOW)


def test_unknown_key_id_is_refused(session: Session):
    with pytest.raises(errors.UnknownCredentialError):
        verify_key(session, api_keys.new_key_material().token, now=NOW)


@pytest.mark.parametrize("token", ["", "tlr_", "Bearer x", "tlr_XYZ_abc", "sk_0123456789ab_" + "a" * 43])
def test_malformed_key_is_refused(session: Session, token: str):
    with pytest.raises(errors.MalformedCredentialError):
        verify_key(session, token, now=NOW)


def test_expired_key_is_refused(session: Session):
    issued = create_key(session, name="temp", role=Role.MONITOR, expires_at=NOW + timedelta(hours=1), now=NOW)
    assert verify_key(session, issued.token, now=NOW + timedelta(minutes=59)).role is Role.MONITOR
    with pytest.raises(errors.ExpiredCredentialError):
        verify_key(session, issued.token, now=NOW + timedelta(hours=1))
    assert list_keys(session)[0].status(NOW + timedelta(hours=2)) == "expired"


def test_revoked_key_is_refused_and_revocation_is_idempotent(session: Session):
    issued = create_key(session, name="leaked", role=Role.MONITOR, now=NOW)
    first = revoke_key(session, issued.info.id, revoked_by="apikey:admin", now=NOW)
    again = revoke_key(session, issued.info.id, now=NOW + timedelta(days=1))
    assert first.revoked_at == again.revoked_at == NOW
    assert again.status(NOW) == "revoked"
    with pytest.raises(errors.RevokedCredentialError):
        verify_key(session, issued.token, now=NOW + timedelta(seconds=1))
    assert list_keys(session, include_revoked=False) == []


def test_revoking_an_unknown_key_names_the_key_id(session: Session):
    with pytest.raises(KeyNotFoundError) as caught:
        revoke_key(session, "000000000000")
    assert caught.value.field == "key_id"


def test_secret_comparison_is_constant_time(session: Session, monkeypatch):
    issued = create_key(session, name="m", role=Role.MONITOR, now=NOW)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_key(session, issued.token, now=NOW)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "  ", "role": Role.MONITOR}, "name"),
        ({"name": "x" * 101, "role": Role.MONITOR}, "name"),
        ({"name": "det", "role": Role.REDCAP}, "role"),
        ({"name": "m", "role": Role.MONITOR, "expires_at": NOW}, "expires_at"),
        ({"name": "m", "role": Role.MONITOR, "expires_at": datetime(2030, 1, 1)}, "expires_at"),
    ],
)
def test_bad_key_request_names_the_field_and_stores_nothing(session: Session, kwargs, field):
    with pytest.raises(KeyRequestError) as caught:
        create_key(session, now=NOW, **kwargs)
    assert caught.value.field == field
    assert list_keys(session) == []


def test_unknown_role_is_refused(session: Session):
    with pytest.raises(UnknownRoleError) as caught:
        create_key(session, name="m", role="superuser", now=NOW)
    assert caught.value.field == "role"


def test_key_survives_a_commit_with_aware_utc_times(engine):
    with Session(engine) as session:
        issued = create_key(session, name="m", role=Role.DSMB, expires_at=NOW + timedelta(days=30), now=NOW)
        session.commit()
    with Session(engine) as session:
        info = list_keys(session)[0]
        assert info.created_at == NOW and info.created_at.tzinfo is not None
        assert info.expires_at == NOW + timedelta(days=30)
        assert verify_key(session, issued.token, now=NOW).role is Role.DSMB
