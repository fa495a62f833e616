"""API keys: how they look, how they are made, how a presented key is checked.

A key reads `tlr_<key id>_<secret>`: the prefix makes a leaked key easy to spot
(secret scanners, logs), the key id finds the stored row in O(1) and the secret
is 256 bits from `secrets`. Only a hash of the secret is stored.

Why plain SHA-256 and not a slow KDF (bcrypt, scrypt, Argon2): slow KDFs exist to
make guessing *low-entropy* passwords expensive. A 256-bit random secret cannot be
guessed at any hashing speed, so slowness would buy no security and would cost
every request. The hash also binds the key id, so a stored hash cannot be moved
to another row.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from gateway.auth.errors import (
    ExpiredCredentialError,
    MalformedCredentialError,
    RevokedCredentialError,
    WrongSecretError,
)

PREFIX = "tlr"
KEY_ID_BYTES = 6  # 12 hex characters: a lookup handle, not a secret
SECRET_BYTES = 32  # 256 bits of entropy
_TOKEN = re.compile(r"^tlr_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class KeyMaterial:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{PREFIX}_{self.key_id}_{self.secret}"

    def __repr__(self) -> str:  # never let the secret reach a log line by accident
        return f"KeyMaterial(key_id={self.key_id!r}, secret='***')"


def new_key_material() -> KeyMaterial:
    return KeyMaterial(secrets.token_hex(KEY_ID_BYTES), secrets.token_urlsafe(SECRET_BYTES))


def parse_token(token: str) -> KeyMaterial:
    match = _TOKEN.match(token.strip())
    if match is None:
        raise MalformedCredentialError("not a Tailor API key")
    return KeyMaterial(match["key_id"], match["secret"])


def hash_secret(key_id: str, secret: str) -> str:
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


def check_secret(material: KeyMaterial, stored_hash: str) -> None:
    # Constant-time: the time taken must not reveal how many characters matched.
    presented = hash_secret(material.key_id, material.secret)
    if not hmac.compare_digest(presented.encode(), stored_hash.encode()):
        raise WrongSecretError("secret does not match")


def check_usable(*, expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> None:
    if revoked_at is not None:
        raise RevokedCredentialError("key revoked")
    if expires_at is not None and expires_at <= now:
        raise ExpiredCredentialError("key expired")
