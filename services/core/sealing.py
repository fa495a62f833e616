"""Payloads sealed to their one consumer: only the holder of a service's bus key reads them.

Construction: HPKE (RFC 9180, base mode) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and
AES-256-GCM, from `cryptography`. The `info` binds a ciphertext to its subject and
participant record, so a payload copied onto another subject or record does not open.
A sealed value is `<key id>.<base64url(enc || ciphertext)>`; the key id is a public
fingerprint that tells the consumer (and a person reading a dead letter) which key it needs.

Each consumer of sealed payloads owns an X25519 key pair. The private key goes to that
service only (`TAILOR_<SERVICE>_BUS_KEY` or `…_BUS_KEY_FILE`, PEM); producers get the public
key (`TAILOR_<SERVICE>_BUS_PUBLIC_KEY` or `…_BUS_PUBLIC_KEY_FILE`, PEM). The embedded SQLite
default keeps the pair under `<TAILOR_HOME>/keys/bus-<service>.{key,pub}`, generated once.
Sealing hides content from anyone who reads the stream or an outbox at rest; it does not
say who sent a message (the bus's per-service credentials do that).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from .errors import PermanentError

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
_INFO = b"tailor/bus-seal/v1"
# Services that receive sealed payloads (each owns a bus key pair).
RECIPIENTS = ("allocation", "notifications", "safety", "randomization", "reports")


class BusKeyError(RuntimeError):
    """No usable bus key; `source` names the variable or file at fault (never the key)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source


class UnsealError(PermanentError):
    """A sealed payload does not open here (another key, another subject or record, or
    tampering). Retrying cannot help: the message goes to the dead-letter stream."""


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(key: X25519PublicKey) -> str:
    return hashlib.sha256(b"tailor/bus-key-id\x1f" + _raw_public(key)).hexdigest()[:16]


def _info(subject: str, record: str) -> bytes:
    return b"\x1f".join((_INFO, subject.encode(), record.encode()))


class Recipient:
    """A consumer's public key: anyone holding it can seal to that consumer."""

    def __init__(self, service: str, key: X25519PublicKey) -> None:
        self.service, self._key, self.key_id = service, key, key_id_of(key)

    def __repr__(self) -> str:
        return f"Recipient({self.service}, key_id={self.key_id})"

    def seal(self, plaintext: bytes, *, subject: str, record: str) -> str:
        sealed = SUITE.encrypt(plaintext, self._key, info=_info(subject, record))
        return f"{self.key_id}.{base64.urlsafe_b64encode(sealed).decode()}"

    def seal_json(self, value: Mapping[str, Any], *, subject: str, record: str) -> str:
        body = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        return self.seal(body.encode(), subject=subject, record=record)


class Keyring:
    """A service's private bus key. Its repr shows only the key id."""

    def __init__(self, service: str, key: X25519PrivateKey) -> None:
        self.service, self._key = service, key
        self.key_id = key_id_of(key.public_key())

    def __repr__(self) -> str:
        return f"Keyring({self.service}, key_id={self.key_id})"

    def recipient(self) -> Recipient:
        return Recipient(self.service, self._key.public_key())

    def secret_material(self) -> bytes:
        """The raw private key, for deriving other keys of this service from (HKDF with
        their own label, e.g. audit.checkpoint_key); never used as a key itself."""
        return self._key.private_bytes(serialization.Encoding.Raw,
                                       serialization.PrivateFormat.Raw,
                                       serialization.NoEncryption())

    def open(self, sealed: str, *, subject: str, record: str) -> bytes:
        key_id, _, body = sealed.partition(".")
        if key_id != self.key_id:
            raise UnsealError(f"payload on {subject} is sealed to bus key {key_id!r}; "
                              f"{self.service} holds {self.key_id!r}")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            return SUITE.decrypt(raw, self._key, info=_info(subject, record))
        except (InvalidTag, binascii.Error, ValueError):
            raise UnsealError(f"payload on {subject} for record {record!r} does not open with "
                              f"bus key {self.key_id} (altered, or moved from another "
                              "subject or record)") from None

    def open_json(self, sealed: str, *, subject: str, record: str) -> dict[str, Any]:
        value = json.loads(self.open(sealed, subject=subject, record=record))
        if not isinstance(value, dict):
            raise UnsealError(f"sealed payload on {subject} is not an object")
        return value


# ── where keys come from ──────────────────────────────────────────────────

def env_name(service: str, *, public: bool) -> str:
    return f"TAILOR_{service.upper()}_BUS_{'PUBLIC_' if public else ''}KEY"


def key_files(directory: Path, service: str) -> tuple[Path, Path]:
    return directory / f"bus-{service}.key", directory / f"bus-{service}.pub"


def _configured_pem(name: str, environ: Mapping[str, str]) -> tuple[bytes, str] | None:
    if environ.get(name):
        return environ[name].encode(), name
    path = environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_bytes(), f"{name}_FILE"
        except OSError:
            raise BusKeyError(f"{name}_FILE", "file cannot be read") from None
    return None


def _private(pem: bytes, source: str) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise BusKeyError(source, "not a PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise BusKeyError(source, "not an X25519 key")
    return key


def _public(pem: bytes, source: str) -> X25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise BusKeyError(source, "not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise BusKeyError(source, "not an X25519 key")
    return key


def write_once(path: Path, data: bytes, mode: int) -> None:
    """Publish a complete file atomically; a concurrent writer's file wins unchanged."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def ensure_bus_keys(directory: Path, services: tuple[str, ...] = RECIPIENTS) -> None:
    """The embedded default's key pairs, generated on first use (private key mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    for service in services:
        private_file, public_file = key_files(directory, service)
        if not private_file.exists():
            fresh = X25519PrivateKey.generate()
            write_once(private_file, fresh.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()), 0o600)
        key = _private(private_file.read_bytes(), str(private_file))
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        if not public_file.exists() or public_file.read_bytes() != public_pem:
            public_file.unlink(missing_ok=True)  # stale: not the half of this private key
            write_once(public_file, public_pem, 0o600)  # the embedded home is private


def load_keyring(service: str, home: Path, *, embedded: bool,
                 environ: Mapping[str, str] = os.environ) -> Keyring:
    """This service's private bus key: configured, or the embedded default's file."""
    name = env_name(service, public=False)
    configured = _configured_pem(name, environ)
    if configured is not None:
        return Keyring(service, _private(*configured))
    if not embedded:
        raise BusKeyError(name, f"set {name} or {name}_FILE (only the embedded SQLite "
                                "default keeps a generated key)")
    ensure_bus_keys(home / "keys", (service,))
    path = key_files(home / "keys", service)[0]
    return Keyring(service, _private(path.read_bytes(), str(path)))


def load_recipient(service: str, home: Path, *, embedded: bool,
                   environ: Mapping[str, str] = os.environ) -> Recipient:
    """A consumer's public bus key, for a producer that seals to it."""
    name = env_name(service, public=True)
    configured = _configured_pem(name, environ)
    if configured is not None:
        return Recipient(service, _public(*configured))
    if not embedded:
        raise BusKeyError(name, f"set {name} or {name}_FILE to {service}'s bus public key")
    ensure_bus_keys(home / "keys", (service,))
    path = key_files(home / "keys", service)[1]
    return Recipient(service, _public(path.read_bytes(), str(path)))
