"""API-key use cases shared by `tailor keys` and `/api/v1/keys`: every change is audited
in the gateway's chain (never the key or its hash). Take a session; never commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from gateway.auth.key_repository import ApiKeyInfo, IssuedKey, create_key, list_keys, revoke_key
from gateway.auth.models import ApiKey
from services.core import audit
from services.core.roles import PRIVILEGED_KEY_ROLES, parse_role

from .schemas import ApiKeyIssued, ApiKeyRead


def key_read(info: ApiKeyInfo, now: datetime | None = None) -> ApiKeyRead:
    status = info.status(now or datetime.now(UTC))
    return ApiKeyRead(id=info.id, name=info.name, role=info.role, status=status,  # type: ignore[arg-type]
                      created_at=info.created_at, created_by=info.created_by,
                      expires_at=info.expires_at, revoked_at=info.revoked_at,
                      last_used_at=info.last_used_at)


def issue_key(session: Session, *, name: str, role: str, expires_in_days: int | None,
              actor: str, actor_role: str, correlation_id: str | None = None,
              reason: str | None = None) -> IssuedKey:
    """`reason` is recorded with the issuance (the CLI requires one for privileged roles)."""
    now = datetime.now(UTC)
    expires_at = now + timedelta(days=expires_in_days) if expires_in_days else None
    issued = create_key(session, name=name, role=role, expires_at=expires_at, created_by=actor,
                        now=now)
    info = issued.info
    audit.append(session, actor=actor, role=actor_role, action="api_key.created",
                 entity_type="api_key", entity_id=info.id, reason=reason,
                 after={"name": info.name, "role": info.role.value, "expires_at": info.expires_at},
                 correlation_id=correlation_id)
    return issued


def issued_read(issued: IssuedKey) -> ApiKeyIssued:
    return ApiKeyIssued(**key_read(issued.info).model_dump(), token=issued.token)


def revoke(session: Session, key_id: str, *, actor: str, actor_role: str,
           correlation_id: str | None = None) -> ApiKeyInfo:
    """Revoke a key; revoking it again changes nothing and is not audited again."""
    row = session.get(ApiKey, key_id)
    was_active = row is not None and row.revoked_at is None
    info = revoke_key(session, key_id, revoked_by=actor)
    if was_active:
        audit.append(session, actor=actor, role=actor_role, action="api_key.revoked",
                     entity_type="api_key", entity_id=key_id,
                     after={"name": info.name, "role": info.role.value,
                            "revoked_at": info.revoked_at}, correlation_id=correlation_id)
    return info


def all_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKeyRead]:
    now = datetime.now(UTC)
    return [key_read(k, now) for k in list_keys(session, include_revoked=include_revoked)]


def is_privileged(role: str) -> bool:
    """An unblinded role, or one half of a two-person rule (see PRIVILEGED_KEY_ROLES)."""
    try:
        return parse_role(role) in PRIVILEGED_KEY_ROLES
    except ValueError:
        return False


def refuse_privileged(session: Session, *, name: str, role: str, actor: str, actor_role: str,
                      correlation_id: str | None = None) -> None:
    """Record that a key for a privileged role was asked for over the API and not issued."""
    audit.append(session, actor=actor, role=actor_role, action="api_key.refused",
                 entity_type="api_key", entity_id="-", reason="privileged role: CLI only",
                 after={"name": name, "role": role}, correlation_id=correlation_id)
