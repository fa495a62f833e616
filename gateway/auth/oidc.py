"""OIDC bearer tokens: a JWT from the site's identity provider, verified against its JWKS.

Only asymmetric algorithms are accepted (RS256, ES256). The algorithm in the
token header is checked against that list *and* against the key it names
before any verification: `alg: none` and HMAC tokens "signed" with the public
key (key confusion) are refused outright.

The Tailor role comes from one configured claim, a string or a list. A list may
carry the identity provider's unrelated groups, which are ignored; but exactly
one Tailor role must remain: holding two roles at once (say coordinator and
study manager) would let a blinded person see unblinded data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKSet

from gateway.auth import errors
from services.core.internal_token import Caller
from services.core.roles import BEARER_ROLES, Role

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256"})
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat"]


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    # Dotted path into the claims, e.g. "realm_access.roles" for Keycloak.
    role_claim: str = "roles"
    # Identity-provider value → Tailor role; empty means the values are Tailor role names.
    role_map: Mapping[str, Role] = field(default_factory=dict)
    algorithms: frozenset[str] = ALLOWED_ALGORITHMS
    leeway: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        if not self.algorithms or not self.algorithms <= ALLOWED_ALGORITHMS:
            raise ValueError(f"algorithms: choose among {sorted(ALLOWED_ALGORITHMS)}")


class KeySource(Protocol):
    def signing_key(self, kid: str | None) -> PyJWK: ...


class StaticJwks:
    """A JWKS given as a dict (from configuration, or built in a test)."""

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = PyJWKSet.from_dict(dict(jwks)).keys

    def signing_key(self, kid: str | None) -> PyJWK:
        if kid is None and len(self._keys) == 1:
            return self._keys[0]
        for key in self._keys:
            if kid is not None and key.key_id == kid:
                return key
        raise errors.InvalidSignatureError("token signed by an unknown key")


class RemoteJwks:
    """The identity provider's JWKS URL; the key set is cached and refetched only for
    an unknown key id (key rotation) or when the cache lifespan is over."""

    def __init__(
        self,
        uri: str,
        *,
        lifespan: timedelta = timedelta(minutes=5),
        timeout: timedelta = timedelta(seconds=5),
    ) -> None:
        self._client = PyJWKClient(
            uri,
            cache_keys=True,
            cache_jwk_set=True,
            lifespan=lifespan.total_seconds(),
            timeout=timeout.total_seconds(),
        )

    def signing_key(self, kid: str | None) -> PyJWK:
        try:
            if kid is None:
                keys = self._client.get_signing_keys()
                if len(keys) == 1:
                    return keys[0]
                raise errors.InvalidSignatureError("token names no key")
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise errors.KeySourceUnavailableError("identity provider keys unavailable") from None
        except jwt.PyJWKClientError:
            raise errors.InvalidSignatureError("token signed by an unknown key") from None


class OidcVerifier:
    def __init__(self, settings: OidcSettings, keys: KeySource) -> None:
        self._settings = settings
        self._keys = keys

    def verify(self, token: str) -> Caller:
        """The caller a bearer token stands for, or an AuthenticationError (answer 401)."""
        key = self._key_for(token)
        claims = self._decode(token, key)
        role = role_from_claim(_dig(claims, self._settings.role_claim), self._settings.role_map)
        return Caller(subject=f"oidc:{claims['sub']}", role=role)

    def _key_for(self, token: str) -> PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise errors.MalformedCredentialError("token cannot be decoded") from None
        alg = header.get("alg")
        if alg not in self._settings.algorithms:
            raise errors.UnsupportedAlgorithmError(f"algorithm {alg!r} not allowed")
        kid = header.get("kid")
        key = self._keys.signing_key(kid if isinstance(kid, str) else None)
        if key.algorithm_name != alg:
            raise errors.UnsupportedAlgorithmError("algorithm does not match the key")
        return key

    def _decode(self, token: str, key: PyJWK) -> dict[str, Any]:
        s = self._settings
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise errors.ExpiredCredentialError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise errors.NotYetValidError("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise errors.WrongAudienceError("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise errors.WrongIssuerError("token from another issuer") from None
        except jwt.InvalidSignatureError:
            raise errors.InvalidSignatureError("signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise errors.UnsupportedAlgorithmError("algorithm not allowed") from None
        except jwt.DecodeError:
            raise errors.MalformedCredentialError("token cannot be decoded") from None
        except jwt.InvalidTokenError as exc:
            raise errors.InvalidClaimsError(str(exc)) from None


def _dig(claims: Mapping[str, Any], path: str) -> object:
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _to_role(value: str, role_map: Mapping[str, Role]) -> Role | None:
    if role_map:
        return role_map.get(value)
    try:
        return Role(value)
    except ValueError:
        return None


def role_from_claim(value: object, role_map: Mapping[str, Role]) -> Role:
    """Exactly one Tailor role that a bearer may hold, from a string or a list claim."""
    if isinstance(value, str):
        values = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        values = value
    else:
        raise errors.RoleNotGrantedError("role claim missing or not a string or list")
    roles = {role for v in values if (role := _to_role(v, role_map)) is not None}
    if len(roles) != 1:
        raise errors.RoleNotGrantedError(f"token grants {len(roles)} known roles, not one")
    (role,) = roles
    if role not in BEARER_ROLES:
        raise errors.RoleNotGrantedError(f"role {role.value!r} cannot be held by a bearer")
    return role
