"""The list key: where it comes from, and what the service seals with it besides slots.

Source, first match wins (never the database, never a log line):
1. `TAILOR_RANDOMIZATION_LIST_KEY`: base64 of 32 random bytes (AES-256);
2. `TAILOR_RANDOMIZATION_LIST_KEY_FILE`: a mounted secret holding that base64 (or the raw
   32 bytes);
3. `<TAILOR_HOME>/keys/list.key`, created once (mode 0600) by the embedded default only
   (SQLite): with PostgreSQL a key made on a pod's disk would be lost with the pod, and the
   sealed list with it, so start-up refuses instead.

Besides the slots (domain/sealing.py) the key seals each allocation's unblinding detail
and the list's seed, and keys two HMAC tags that keep the database opaque without it:
`stratum_ref` (a stratum = a cluster) and `participant_tag` (which record used a slot).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.core.secret_store import SecretMissing, load_secret

from .domain import KEY_BYTES

log = structlog.get_logger(__name__)

ENV_KEY = "TAILOR_RANDOMIZATION_LIST_KEY"
ENV_KEY_FILE = f"{ENV_KEY}_FILE"
KEY_FILE = "list.key"
_NONCE = 12


class ListKeyError(RuntimeError):
    """No usable list key; `source` names the variable or file at fault (never the key)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source


class SealedDataError(ValueError):
    """Sealed data does not open with this key at this place (wrong key or tampering)."""


def _aad(purpose: str, parts: Sequence[str]) -> bytes:
    return json.dumps([purpose, *parts], separators=(",", ":")).encode()


class ListKey:
    """The 256-bit list key and the operations that need it. Its repr shows only its id."""

    __slots__ = ("_aes", "_material", "source")

    def __init__(self, material: bytes, *, source: str) -> None:
        if len(material) != KEY_BYTES:
            raise ListKeyError(source, f"the list key must be {KEY_BYTES} bytes (AES-256)")
        self._material = material
        self._aes = AESGCM(material)
        self.source = source

    @property
    def material(self) -> bytes:
        return self._material

    @property
    def key_id(self) -> str:
        """A public fingerprint: which key sealed a list, without revealing it."""
        return self._tag("tailor.list-key-id/1", ())[:16]

    def __repr__(self) -> str:
        return f"ListKey(id={self.key_id}, source={self.source!r})"

    def _tag(self, purpose: str, parts: Sequence[str]) -> str:
        return hmac.new(self._material, _aad(purpose, parts), hashlib.sha256).hexdigest()

    def stratum_ref(self, list_id: str, stratum: str) -> str:
        """Opaque name of a stratum in the database: a stratum key is a cluster."""
        return self._tag("tailor.stratum-ref/1", (list_id, stratum))[:32]

    def participant_tag(self, list_id: str, record: str) -> str:
        """Who used a slot, opaque without the key (record ids are guessable)."""
        return self._tag("tailor.participant-tag/1", (list_id, record))[:32]

    def stage_participant_tag(self, list_id: str, stage: str, record: str) -> str:
        """Who used a slot of a later stage (each participant uses one slot per stage)."""
        return self._tag("tailor.stage-participant-tag/1", (list_id, stage, record))[:32]

    def seal(self, purpose: str, aad: Sequence[str], plaintext: bytes) -> bytes:
        """nonce ‖ AES-256-GCM ciphertext; opens only with the same purpose and `aad`."""
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aes.encrypt(nonce, plaintext, _aad(purpose, aad))

    def open(self, purpose: str, aad: Sequence[str], sealed: bytes) -> bytes:
        try:
            return self._aes.decrypt(sealed[:_NONCE], sealed[_NONCE:], _aad(purpose, aad))
        except InvalidTag:
            raise SealedDataError(f"{purpose}: does not open with this key here "
                                  "(wrong key, or the data was altered or moved)") from None


def _decode(raw: bytes, source: str) -> bytes:
    text = raw.strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) == KEY_BYTES:
        return key
    if len(raw) == KEY_BYTES:  # a mounted secret may hold the raw bytes
        return raw
    raise ListKeyError(source, f"must hold base64 of {KEY_BYTES} random bytes (AES-256)")


def load_list_key(home: Path, *, allow_generate: bool,
                  environ: Mapping[str, str] | None = None) -> ListKey:
    """The list key from the environment, a mounted file or the embedded stack's folder."""
    try:
        secret = load_secret(ENV_KEY, home=home, embedded_file=KEY_FILE,
                             allow_generate=allow_generate, environ=environ,
                             generate=lambda: new_key_text().encode() + b"\n")
    except SecretMissing as err:
        raise ListKeyError(err.source, str(err).removeprefix(f"{err.source}: ")) from None
    return ListKey(_decode(secret.value, secret.source), source=secret.source)


def new_key_text() -> str:
    """A fresh key in the form the environment variable takes."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
