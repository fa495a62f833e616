"""Authentication failures. Each maps to 401; the reason goes to the log and the
audit trail, never to the caller (telling an attacker *why* a key failed helps them).
"""

from __future__ import annotations

AUTHORIZATION = "Authorization"


class AuthenticationError(ValueError):
    field = AUTHORIZATION

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.field}: {reason}")
        self.reason = reason


class MalformedCredentialError(AuthenticationError):
    pass


class UnknownCredentialError(AuthenticationError):
    pass


class WrongSecretError(AuthenticationError):
    pass


class ExpiredCredentialError(AuthenticationError):
    pass


class RevokedCredentialError(AuthenticationError):
    pass


class UnsupportedAlgorithmError(AuthenticationError):
    pass


class InvalidSignatureError(AuthenticationError):
    pass


class WrongIssuerError(AuthenticationError):
    pass


class WrongAudienceError(AuthenticationError):
    pass


class NotYetValidError(AuthenticationError):
    pass


class InvalidClaimsError(AuthenticationError):
    pass


class RoleNotGrantedError(AuthenticationError):
    """The token names no Tailor role, an unknown one, or several at once."""


class KeySourceUnavailableError(AuthenticationError):
    """The identity provider's JWKS cannot be fetched: the gateway answers 503, not 401."""
