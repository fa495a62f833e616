"""Keyed digests (HMAC-SHA256) of data that must stay secret, for audit entries.

A plain SHA-256 of a small secret (a few participants' arms) is undone by trying every
value: someone who knows part of the data recovers the rest. Keyed with a server-side
secret, the digest still proves later which data was used (to whoever holds the key)
but cannot be recomputed from guesses by a reader of the audit trail.

The key: `TAILOR_<SERVICE>_DIGEST_KEY` (base64 of 32 bytes) or `…_DIGEST_KEY_FILE`; the
embedded SQLite default keeps one under `<TAILOR_HOME>/keys/<service>-digest.key`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .audit import canonical_json
from .sealing import write_once

KEY_BYTES = 32


class DigestKeyError(RuntimeError):
    """No usable digest key; `source` names the variable or file at fault (never the key)."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source


class DigestKey:
    """HMAC-SHA256 over the canonical JSON of a value. Its repr shows only the key id."""

    def __init__(self, material: bytes, *, source: str) -> None:
        if len(material) != KEY_BYTES:
            raise DigestKeyError(source, f"must decode to {KEY_BYTES} bytes, got {len(material)}")
        self._material = material
        self.key_id = hmac.new(material, b"tailor/digest-key-id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"DigestKey(key_id={self.key_id})"

    def digest(self, value: Any) -> str:
        return hmac.new(self._material, canonical_json(value).encode(), hashlib.sha256).hexdigest()


def env_name(service: str) -> str:
    return f"TAILOR_{service.upper()}_DIGEST_KEY"


def _decode(raw: str, source: str) -> bytes:
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DigestKeyError(source, "not base64") from None


def load_digest_key(service: str, home: Path, *, embedded: bool,
                    environ: Mapping[str, str] = os.environ) -> DigestKey:
    name = env_name(service)
    if environ.get(name):
        return DigestKey(_decode(environ[name], name), source=name)
    if environ.get(f"{name}_FILE"):
        try:
            raw = Path(environ[f"{name}_FILE"]).read_text()
        except OSError:
            raise DigestKeyError(f"{name}_FILE", "file cannot be read") from None
        return DigestKey(_decode(raw, f"{name}_FILE"), source=f"{name}_FILE")
    if not embedded:
        raise DigestKeyError(name, f"set {name} or {name}_FILE (only the embedded SQLite "
                                   "default keeps a generated key)")
    path = home / "keys" / f"{service}-digest.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = base64.b64encode(secrets.token_bytes(KEY_BYTES))
        write_once(path, fresh, 0o600)
    return DigestKey(_decode(path.read_text(), str(path)), source=str(path))
