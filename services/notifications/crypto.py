"""Contact details encrypted at rest: AES-256-GCM, one random nonce per write.

The record id is the associated data, so a ciphertext moved to another participant's row
fails to decrypt instead of silently contacting the wrong person. The key comes from
`TAILOR_NOTIFICATIONS_CONTACT_KEY` (base64 of 32 bytes); the embedded stack generates one
under `<TAILOR_HOME>/keys/`. Neither the key nor any contact value is ever logged:
`ContactDetails` hides its values from `repr`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from services.core.secret_store import SecretMissing, load_secret

KEY_FILE = "notifications-contact.key"
ENV_KEY = "TAILOR_NOTIFICATIONS_CONTACT_KEY"
_NONCE = 12


class ContactKeyError(ValueError):
    field = ENV_KEY


class ContactDecryptError(ValueError):
    """The stored contact details do not decrypt with this key for this record."""


@dataclass(frozen=True)
class ContactDetails:
    """What the consent form tells us about reaching a participant."""

    email: str | None = field(default=None, repr=False)
    mobile: str | None = field(default=None, repr=False)
    address: tuple[str, ...] = field(default=(), repr=False)
    language: str | None = field(default=None, repr=False)
    timezone: str | None = field(default=None, repr=False)
    opted_out: frozenset[str] = field(default=frozenset(), repr=False)  # from the form
    staff_opted_out: frozenset[str] = field(default=frozenset(), repr=False)  # via the API

    def reachable(self) -> frozenset[str]:
        """Channels for which details are on file."""
        channels = set()
        if self.email:
            channels.add("email")
        if self.mobile:
            channels.update({"sms", "phone"})
        if self.address:
            channels.add("letter")
        return frozenset(channels)

    def opt_outs(self) -> frozenset[str]:
        return self.opted_out | self.staff_opted_out

    def to_json(self) -> bytes:
        data = asdict(self)
        data["address"] = list(self.address)
        data["opted_out"] = sorted(self.opted_out)
        data["staff_opted_out"] = sorted(self.staff_opted_out)
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ContactDetails:
        data = json.loads(raw)
        return cls(email=data.get("email"), mobile=data.get("mobile"),
                   address=tuple(data.get("address") or ()), language=data.get("language"),
                   timezone=data.get("timezone"),
                   opted_out=frozenset(data.get("opted_out") or ()),
                   staff_opted_out=frozenset(data.get("staff_opted_out") or ()))


def _decode_key(raw: str, source: str) -> bytes:
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ContactKeyError(f"{source}: not base64") from None
    if len(key) != 32:
        raise ContactKeyError(f"{source}: must decode to 32 bytes, got {len(key)}")
    return key


def load_contact_key(configured: SecretStr | None, home: Path, *, allow_generate: bool,
                     environ: Mapping[str, str] | None = None) -> bytes:
    """The configured key (environment or settings, `..._FILE` for a mounted secret), else
    — embedded SQLite stack only — the key file under TAILOR_HOME (created on first use)."""
    if configured is not None:
        return _decode_key(configured.get_secret_value(), ENV_KEY)
    try:
        secret = load_secret(ENV_KEY, home=home, embedded_file=KEY_FILE, environ=environ,
                             allow_generate=allow_generate,
                             generate=lambda: base64.b64encode(AESGCM.generate_key(bit_length=256)))
    except SecretMissing as err:
        raise ContactKeyError(str(err)) from None
    return _decode_key(secret.value.decode(errors="replace"), secret.source)


class ContactCipher:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"tailor-contact-key\x1f" + key).hexdigest()[:12]
        self._link_key = hashlib.sha256(b"tailor-link-token\x1f" + key).digest()

    def __repr__(self) -> str:
        return f"ContactCipher(key_id={self.key_id})"

    def seal(self, record: str, details: ContactDetails) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, details.to_json(), record.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, record: str, blob: str) -> ContactDetails:
        raw = base64.b64decode(blob)
        try:
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], record.encode())
        except InvalidTag:
            raise ContactDecryptError(
                f"contact details of record {record!r} do not decrypt with key "
                f"{self.key_id}") from None
        return ContactDetails.from_json(plain)

    def link_token(self, *parts: str) -> str:
        """An unguessable, stable token for a questionnaire or prompt link."""
        mac = hmac.new(self._link_key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode()
