"""Who sent a request: a Tailor API key (`Bearer tlr_…`) or an OIDC token (`Bearer <JWT>`).

Synchronous (a database read, perhaps a JWKS fetch): the guard runs it in a thread.
Every failure is an `AuthenticationError`; the guard answers 401 without the reason.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from gateway.auth import errors
from gateway.auth.api_keys import PREFIX, parse_token
from gateway.auth.key_repository import verify_key
from gateway.auth.oidc import OidcVerifier
from services.core.db import unit_of_work
from services.core.internal_token import Caller


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if not scheme:
        raise errors.MalformedCredentialError("no credentials")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.MalformedCredentialError("not a bearer token")
    return token.strip()


def is_api_key(token: str) -> bool:
    return token.startswith(f"{PREFIX}_")


def key_id_of(token: str) -> str | None:
    """The key id of a well-formed API key (to audit refusals of a known key), else None."""
    try:
        return parse_token(token).key_id if is_api_key(token) else None
    except errors.AuthenticationError:
        return None


def authenticate(engine: Engine, oidc: OidcVerifier | None, authorization: str | None) -> Caller:
    token = bearer_token(authorization)
    if is_api_key(token):
        with unit_of_work(engine) as session:
            return verify_key(session, token)
    if oidc is None:
        raise errors.MalformedCredentialError("not a Tailor API key, and no identity provider is configured")
    return oidc.verify(token)
