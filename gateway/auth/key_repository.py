"""Every query on API keys. Functions take a Session and never commit: the edge
(request or CLI command) owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, col, select

from gateway.auth.api_keys import (
    check_secret,
    check_usable,
    hash_secret,
    new_key_material,
    parse_token,
)
from gateway.auth.errors import UnknownCredentialError
from gateway.auth.models import ApiKey
from services.core.internal_token import Caller
from services.core.roles import BEARER_ROLES, Role, parse_role

# Recording every use would write on every request; a minute is precise enough
# to tell a monitor when a key was last seen.
LAST_USED_RESOLUTION = timedelta(minutes=1)
NAME_MAX = 100


class KeyRequestError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class KeyNotFoundError(KeyRequestError):
    def __init__(self, key_id: str) -> None:
        super().__init__("key_id", f"no API key {key_id!r}")


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never its secret or hash."""

    id: str
    name: str
    role: Role
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `token` exists only here, to be shown once to whoever asked."""

    info: ApiKeyInfo
    token: str

    def __repr__(self) -> str:
        return f"IssuedKey(info={self.info!r}, token='***')"


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _validated_request(
    name: str, role: Role | str, expires_at: datetime | None, now: datetime
) -> tuple[str, Role]:
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise KeyRequestError("name", f"give a name of 1 to {NAME_MAX} characters")
    parsed = parse_role(str(role))
    if parsed not in BEARER_ROLES:
        raise KeyRequestError("role", f"role {parsed.value!r} cannot hold an API key")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise KeyRequestError("expires_at", "give a timezone-aware time")
        if expires_at <= now:
            raise KeyRequestError("expires_at", "must be in the future")
    return name, parsed


def create_key(
    session: Session,
    *,
    name: str,
    role: Role | str,
    expires_at: datetime | None = None,
    created_by: str | None = None,
    now: datetime | None = None,
) -> IssuedKey:
    now = now or datetime.now(UTC)
    name, parsed_role = _validated_request(name, role, expires_at, now)
    material = new_key_material()
    row = ApiKey(
        id=material.key_id,
        name=name,
        role=parsed_role.value,
        secret_hash=hash_secret(material.key_id, material.secret),
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return IssuedKey(_info(row), material.token)


def list_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
    query = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    return [_info(row) for row in session.exec(query)]


def revoke_key(
    session: Session, key_id: str, *, revoked_by: str | None = None, now: datetime | None = None
) -> ApiKeyInfo:
    """Revoke a key; revoking it again changes nothing (the first revocation stands)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise KeyNotFoundError(key_id)
    if row.revoked_at is None:
        row.revoked_at = now or datetime.now(UTC)
        row.revoked_by = revoked_by
        session.add(row)
        session.flush()
    return _info(row)


def verify_key(session: Session, token: str, *, now: datetime | None = None) -> Caller:
    """The caller a presented key stands for, or an AuthenticationError (answer 401)."""
    now = now or datetime.now(UTC)
    material = parse_token(token)
    row = session.get(ApiKey, material.key_id)
    if row is None:
        # Hash anyway so an unknown id costs about the same as a wrong secret.
        hash_secret(material.key_id, material.secret)
        raise UnknownCredentialError("no such key")
    check_secret(material, row.secret_hash)
    check_usable(expires_at=row.expires_at, revoked_at=row.revoked_at, now=now)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.add(row)
        session.flush()
    return Caller(subject=f"apikey:{row.id}", role=Role(row.role), key_id=row.id, key_name=row.name)
