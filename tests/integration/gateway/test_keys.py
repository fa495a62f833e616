"""API-key lifecycle: issued once (by an admin through the API, or `tailor keys`), used,
listed without its secret, expired or revoked at once; every change audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from gateway.auth.errors import ExpiredCredentialError, RevokedCredentialError
from gateway.auth.key_repository import verify_key
from services.core.audit import AuditEntry
from services.core.db import make_engine
from services.core.roles import Role
from tailor_cli.main import app as tailor

from .support import Edge

HEADS = "/api/v1/audit/heads"
VERIFY = "/api/v1/audit/verify"


def _gateway_audit(edge: Edge, action: str) -> list[AuditEntry]:
    with edge.session() as session:
        return list(session.exec(select(AuditEntry).where(col(AuditEntry.action) == action)))


def test_admin_issues_a_key_that_works_until_revoked(edge: Edge) -> None:
    issued = edge.call("POST", "/api/v1/keys", Role.ADMIN,
                       json={"name": "operations on call", "role": "ops", "expires_in_days": 30})
    assert issued.status_code == 201, issued.text
    key = issued.json()
    token = key.pop("token")
    assert token.startswith("tlr_") and key["status"] == "active" and key["role"] == "ops"
    assert datetime.fromisoformat(key["expires_at"]) > datetime.now(UTC) + timedelta(days=29)
    bearer = {"Authorization": f"Bearer {token}"}
    assert edge.call("GET", HEADS, headers=bearer).status_code == 200

    listing = edge.call("GET", "/api/v1/keys", Role.ADMIN)
    assert listing.status_code == 200
    assert token not in listing.text and token.split("_", 2)[2] not in listing.text
    [listed] = [k for k in listing.json() if k["id"] == key["id"]]
    assert listed["last_used_at"] is not None and "token" not in listed

    revoked = edge.call("POST", f"/api/v1/keys/{key['id']}/revoke", Role.ADMIN)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert edge.call("GET", HEADS, headers=bearer).status_code == 401
    again = edge.call("POST", f"/api/v1/keys/{key['id']}/revoke", Role.ADMIN)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    active = edge.call("GET", "/api/v1/keys", Role.ADMIN, params={"include_revoked": False}).json()
    assert key["id"] not in {k["id"] for k in active}

    created = [e for e in _gateway_audit(edge, "api_key.created") if e.entity_id == key["id"]]
    revocations = [e for e in _gateway_audit(edge, "api_key.revoked") if e.entity_id == key["id"]]
    assert len(created) == 1 and len(revocations) == 1  # revoking again is not a change
    assert created[0].actor == f"apikey:{edge.key_ids[Role.ADMIN]}" and created[0].role == "admin"
    refusals = [e for e in _gateway_audit(edge, "auth.refused") if e.entity_id == key["id"]]
    assert [json.loads(e.after or "{}")["reason"] for e in refusals] == ["key revoked"]
    for entry in created + revocations + refusals:
        assert token.split("_", 2)[2] not in (entry.after or "")


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "the REDCap server", "role": "redcap"}, "role"),
    ({"name": "someone", "role": "superuser"}, "role"),
    ({"name": "", "role": "monitor"}, "name"),
    ({"name": "someone", "role": "monitor", "expires_in_days": 0}, "expires_in_days"),
    ({"name": "someone", "role": "monitor", "scopes": ["all"]}, "scopes"),
])
def test_a_bad_key_request_names_the_field_and_issues_nothing(edge: Edge, body: dict, field: str) -> None:
    before = len(edge.call("GET", "/api/v1/keys", Role.ADMIN).json())
    refused = edge.call("POST", "/api/v1/keys", Role.ADMIN, json=body)
    assert refused.status_code == 422
    assert field in refused.text
    assert len(edge.call("GET", "/api/v1/keys", Role.ADMIN).json()) == before


@pytest.mark.parametrize("role", ["study_manager", "dsmb", "statistician", "monitor"])
def test_keys_for_unblinded_or_two_person_roles_are_never_issued_over_the_api(
        edge: Edge, role: str) -> None:
    before = len(edge.call("GET", "/api/v1/keys", Role.ADMIN).json())
    refusals = len(_gateway_audit(edge, "api_key.refused"))
    refused = edge.call("POST", "/api/v1/keys", Role.ADMIN, json={"name": "a second me", "role": role})
    assert refused.status_code == 403 and refused.json()["field"] == "role"
    assert "tailor keys create" in refused.json()["detail"]
    assert len(edge.call("GET", "/api/v1/keys", Role.ADMIN).json()) == before  # nothing issued
    entries = _gateway_audit(edge, "api_key.refused")
    assert len(entries) == refusals + 1  # the attempt is on record
    assert json.loads(entries[-1].after or "{}")["role"] == role
    assert entries[-1].actor == f"apikey:{edge.key_ids[Role.ADMIN]}"


def test_the_cli_issues_a_privileged_key_only_with_a_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    monkeypatch.setenv("TAILOR_GATEWAY_DATABASE_URL", url)
    runner = CliRunner()
    bare = runner.invoke(tailor, ["keys", "create", "--role", "dsmb", "--name", "DSMB chair"])
    assert bare.exit_code == 2 and "--reason" in bare.output
    made = runner.invoke(tailor, ["keys", "create", "--role", "dsmb", "--name", "DSMB chair",
                                  "--reason", "DSMB charter signed 2025-03-01"])
    assert made.exit_code == 0, made.output
    engine = make_engine(url)
    with Session(engine) as session:
        [entry] = session.exec(select(AuditEntry).where(
            col(AuditEntry.action) == "api_key.created")).all()
    engine.dispose()
    assert entry.reason == "DSMB charter signed 2025-03-01" and entry.actor.startswith("cli")


def test_revoking_an_unknown_key_is_a_404(edge: Edge) -> None:
    missing = edge.call("POST", "/api/v1/keys/0123456789ab/revoke", Role.ADMIN)
    assert missing.status_code == 404 and missing.json()["field"] == "key_id"


def test_cli_creates_lists_and_revokes_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    monkeypatch.setenv("TAILOR_GATEWAY_DATABASE_URL", url)
    runner = CliRunner()
    made = runner.invoke(tailor, ["keys", "create", "--role", "monitor", "--name", "Dr. Monitor",
                                  "--expires-in-days", "90", "--reason", "trial monitor appointed"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("tlr_") and "\n" not in token  # the key alone on stdout
    key_id = token.split("_")[1]
    engine = make_engine(url)
    with Session(engine) as session:
        assert verify_key(session, token).role is Role.MONITOR

    listed = runner.invoke(tailor, ["keys", "list"])
    assert listed.exit_code == 0 and key_id in listed.stdout and "active" in listed.stdout
    assert token.split("_", 2)[2] not in listed.stdout

    revoked = runner.invoke(tailor, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    with Session(engine) as session, pytest.raises(RevokedCredentialError):
        verify_key(session, token)
    assert runner.invoke(tailor, ["keys", "revoke", "0123456789ab"]).exit_code == 2
    assert runner.invoke(tailor, ["keys", "create", "--role", "redcap", "--name", "x"]).exit_code == 2
    engine.dispose()


def test_an_expired_key_is_refused(edge: Edge) -> None:
    past = datetime.now(UTC) - timedelta(hours=3)
    key_id, token = edge.issue(Role.MONITOR, "short-lived", now=past, expires_at=past + timedelta(hours=1))
    assert edge.call("GET", VERIFY, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with edge.session() as session, pytest.raises(ExpiredCredentialError):
        verify_key(session, token)
    listed = edge.call("GET", "/api/v1/keys", Role.ADMIN).json()
    assert next(k for k in listed if k["id"] == key_id)["status"] == "expired"
