"""Short-lived signed tokens that carry the caller's identity from the gateway to a service.

The gateway authenticates the person or machine, then signs a token (Ed25519,
JWT `alg: EdDSA`) for the one service it forwards to: audience = service name,
issuer = gateway, lifetime about a minute. Services hold only the public key,
so a compromised service cannot mint identities for another. A service reached
directly without a valid token must answer 401; every failure below is an
`InternalTokenError` for exactly that.

A token is good for one request: its `routes` claim names, per audience, the one method
and path it was signed for (so a token seen in transit opens no other route), and each
verifier accepts a `jti` once (so it cannot be replayed on that route either): in its own
process, and through `shared_seen` (services/core/used_tokens.py) across the replicas that
share a database.

Framework-free on purpose: the FastAPI dependency lives elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.core.roles import Role, UnknownRoleError, parse_role

HEADER = "X-Tailor-Internal-Token"
ISSUER = "tailor-gateway"
ALGORITHM = "EdDSA"
DEFAULT_TTL = timedelta(seconds=60)
# Clock skew tolerated between gateway and service hosts.
DEFAULT_LEEWAY = timedelta(seconds=5)
PRIVATE_KEY_FILE = "internal-token.key"
PUBLIC_KEY_FILE = "internal-token.pub"
ENV_PRIVATE_KEY = "TAILOR_INTERNAL_TOKEN_PRIVATE_KEY"
ENV_PUBLIC_KEY = "TAILOR_INTERNAL_TOKEN_PUBLIC_KEY"
ROUTES_CLAIM = "routes"


def route_of(method: str, path: str) -> str:
    """`METHOD /path` as the service sees it (HEAD is a GET)."""
    verb = method.upper()
    return f"{'GET' if verb == 'HEAD' else verb} {path}"


@dataclass(frozen=True)
class Caller:
    """Who is calling, as established by the gateway."""

    subject: str
    role: Role
    key_id: str | None = None
    key_name: str | None = None
    request_id: str | None = None


class InternalTokenError(ValueError):
    """The request carries no usable internal token: answer 401."""

    field = HEADER

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.field}: {reason}")
        self.reason = reason


class MissingTokenError(InternalTokenError):
    pass


class MalformedTokenError(InternalTokenError):
    pass


class UnsupportedAlgorithmError(InternalTokenError):
    pass


class InvalidSignatureError(InternalTokenError):
    pass


class ExpiredTokenError(InternalTokenError):
    pass


class WrongAudienceError(InternalTokenError):
    pass


class WrongIssuerError(InternalTokenError):
    pass


class InvalidClaimsError(InternalTokenError):
    pass


class WrongRouteError(InternalTokenError):
    pass


class ReplayedTokenError(InternalTokenError):
    pass


class SeenTokens:
    """Token ids already accepted, kept until the token would have expired anyway."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._expiry: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def first_use(self, jti: str, expires: float) -> bool:
        with self._lock:
            now = self._clock()
            if len(self._expiry) > 10_000:
                self._expiry = {k: e for k, e in self._expiry.items() if e >= now}
            if jti in self._expiry:
                return False
            self._expiry[jti] = expires
            return True


class InternalKeyError(ValueError):
    """A configured key is missing or is not an Ed25519 key."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint naming the key in the token header (rotation)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class InternalTokenSigner:
    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str = ISSUER,
        ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        self._key = private_key
        self._kid = key_id_of(private_key.public_key())
        self._issuer = issuer
        self._ttl = ttl

    def secret_material(self) -> bytes:
        """The raw private key, for deriving other keys of the gateway from (HKDF with
        their own label, e.g. audit.checkpoint_key); never used as a key itself."""
        return self._key.private_bytes(serialization.Encoding.Raw,
                                       serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())

    def sign(self, caller: Caller, *, audience: str | list[str], now: datetime | None = None,
             routes: Mapping[str, str] | None = None) -> str:
        """`audience` may list several services (e.g. safety and randomization for the DSMB
        report, which safety forwards): each verifier checks its own name is a member.
        `routes` binds the token, per audience, to one `METHOD /path` (see `route_of`)."""
        issued = now or datetime.now(UTC)
        claims = {
            "iss": self._issuer,
            "aud": audience if isinstance(audience, str) else list(audience),
            "sub": caller.subject,
            "role": caller.role.value,
            "key_id": caller.key_id,
            "key_name": caller.key_name,
            "request_id": caller.request_id,
            "iat": int(issued.timestamp()),
            "exp": int((issued + self._ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            ROUTES_CLAIM: dict(routes or {}),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})

    def sign_detached(self, message: bytes) -> str:
        """`kid.signature` over `message` with the gateway's key: what the gateway publishes
        (its audit heads) can be checked by every service holding the public key."""
        raw = self._key.sign(message)
        return f"{self._kid}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"


class InternalTokenVerifier:
    """Verifies tokens addressed to one service; accepts several public keys for rotation."""

    def __init__(
        self,
        public_keys: Ed25519PublicKey | list[Ed25519PublicKey],
        *,
        audience: str,
        issuer: str = ISSUER,
        leeway: timedelta = DEFAULT_LEEWAY,
        max_lifetime: timedelta = DEFAULT_TTL,
    ) -> None:
        keys = public_keys if isinstance(public_keys, list) else [public_keys]
        self._keys: Mapping[str, Ed25519PublicKey] = {key_id_of(k): k for k in keys}
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._seen = SeenTokens()

    def verify(self, token: str, *, method: str | None = None, path: str | None = None,
               shared_seen: Callable[[str, float], bool] | None = None) -> Caller:
        """The caller; with `method` and `path`, only if the token was signed for exactly
        that request, and only the first time its `jti` is seen — by this process and, with
        `shared_seen(jti, exp)` (the service's database), by any replica."""
        claims = self._claims(token)
        if method is not None and path is not None:
            routes = claims.get(ROUTES_CLAIM)
            bound = routes.get(self._audience) if isinstance(routes, dict) else None
            if bound != route_of(method, path):
                raise WrongRouteError("token was not signed for this method and path")
        caller = self._caller(claims)
        if not self._seen.first_use(str(claims["jti"]), float(claims["exp"])):  # type: ignore[arg-type]
            raise ReplayedTokenError("token was used before")
        if shared_seen is not None and not shared_seen(str(claims["jti"]), float(claims["exp"])):  # type: ignore[arg-type]
            raise ReplayedTokenError("token was used before")
        return caller

    def verify_detached(self, message: bytes, signature: str | None) -> bool:
        """Whether `signature` (from `InternalTokenSigner.sign_detached`) is the gateway's."""
        kid, _, encoded = (signature or "").partition(".")
        key = self._keys.get(kid)
        if key is None or not encoded:
            return False
        try:
            key.verify(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)), message)
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def _claims(self, token: str) -> dict[str, object]:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["iss", "aud", "sub", "role", "iat", "exp", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise ExpiredTokenError("token expired") from None
        except jwt.InvalidAudienceError:
            raise WrongAudienceError(f"token is not addressed to {self._audience}") from None
        except jwt.InvalidIssuerError:
            raise WrongIssuerError("token was not issued by the gateway") from None
        except jwt.InvalidSignatureError:
            raise InvalidSignatureError("signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise UnsupportedAlgorithmError("algorithm not allowed") from None
        except jwt.DecodeError:
            raise MalformedTokenError("token cannot be decoded") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidClaimsError(str(exc)) from None
        return claims  # type: ignore[no-any-return]

    def _key_for(self, token: str) -> Ed25519PublicKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise MalformedTokenError("token cannot be decoded") from None
        # Checked before anything else: `none` and HMAC must never reach a verifier.
        if header.get("alg") != ALGORITHM:
            raise UnsupportedAlgorithmError(f"algorithm {header.get('alg')!r} not allowed")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise InvalidSignatureError("token signed by an unknown key")
        return key

    def _caller(self, claims: Mapping[str, object]) -> Caller:
        lifetime = int(claims["exp"]) - int(claims["iat"])  # type: ignore[call-overload]
        if lifetime > self._max_lifetime.total_seconds():
            raise InvalidClaimsError("token lifetime exceeds the allowed maximum")
        try:
            role = parse_role(str(claims["role"]))
        except UnknownRoleError:
            raise InvalidClaimsError("unknown role") from None
        return Caller(
            subject=str(claims["sub"]),
            role=role,
            key_id=_optional_str(claims.get("key_id")),
            key_name=_optional_str(claims.get("key_name")),
            request_id=_optional_str(claims.get("request_id")),
        )


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def caller_from_header(header_value: str | None, verifier: InternalTokenVerifier, *,
                       method: str | None = None, path: str | None = None,
                       shared_seen: Callable[[str, float], bool] | None = None) -> Caller:
    """The caller named by an internal-token header value (optionally `Bearer `-prefixed),
    for the request `method` `path` when given."""
    token = (header_value or "").strip()
    scheme, _, rest = token.partition(" ")
    if scheme.lower() == "bearer":
        token = rest.strip()
    if not token:
        raise MissingTokenError("no internal token")
    if any(c.isspace() for c in token):
        raise MalformedTokenError("token cannot be decoded")
    return verifier.verify(token, method=method, path=path, shared_seen=shared_seen)


# --- keys -------------------------------------------------------------------------------


def load_private_key(pem: bytes, *, field: str = ENV_PRIVATE_KEY) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise InternalKeyError(field, "not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InternalKeyError(field, "not an Ed25519 key")
    return key


def load_public_key(pem: bytes, *, field: str = ENV_PUBLIC_KEY) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise InternalKeyError(field, "not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InternalKeyError(field, "not an Ed25519 key")
    return key


def _pem_from_env(name: str, environ: Mapping[str, str]) -> bytes:
    """PEM from `NAME` (inline) or `NAME_FILE` (a mounted secret)."""
    if environ.get(name):
        return environ[name].encode()
    path = environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_bytes()
        except OSError:
            raise InternalKeyError(f"{name}_FILE", "file cannot be read") from None
    raise InternalKeyError(name, f"set {name} or {name}_FILE")


def private_key_from_env(environ: Mapping[str, str] = os.environ) -> Ed25519PrivateKey:
    return load_private_key(_pem_from_env(ENV_PRIVATE_KEY, environ))


def public_key_from_env(environ: Mapping[str, str] = os.environ) -> Ed25519PublicKey:
    return load_public_key(_pem_from_env(ENV_PUBLIC_KEY, environ))


@dataclass(frozen=True)
class KeyPairFiles:
    private_key: Path
    public_key: Path


def _write_secret(path: Path, data: bytes) -> None:
    # Created with 0600 from the start (no window with a wider mode); never overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # the umask may have narrowed it further; pin it exactly


def ensure_keypair(directory: Path) -> KeyPairFiles:
    """The embedded default's key pair under `directory`, generated on first use."""
    files = KeyPairFiles(directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE)
    if files.private_key.exists():
        private = load_private_key(files.private_key.read_bytes(), field=str(files.private_key))
        if not files.public_key.exists():
            _write_secret(files.public_key, _public_pem(private.public_key()))
        return files
    directory.mkdir(parents=True, exist_ok=True)
    files.public_key.unlink(missing_ok=True)  # a public key without its private half is stale
    private = Ed25519PrivateKey.generate()
    _write_secret(
        files.private_key,
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_secret(files.public_key, _public_pem(private.public_key()))
    return files


def _public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
