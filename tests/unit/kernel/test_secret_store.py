"""One secrets loader: environment, mounted file, and a generated file only in the
embedded SQLite stack (never per replica on a shared database)."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from services.core.secret_store import SecretMissing, load_secret
from services.notifications.crypto import ENV_KEY, KEY_FILE, ContactKeyError, load_contact_key

KEY = base64.b64encode(bytes(range(32)))


def _load(home: Path, environ: dict[str, str], allow_generate: bool) -> bytes:
    return load_secret("TAILOR_X", home=home, embedded_file="x.key", environ=environ,
                       allow_generate=allow_generate, generate=lambda: b"generated").value


def test_environment_then_mounted_file_then_embedded_file(tmp_path: Path) -> None:
    mounted = tmp_path / "mounted"
    mounted.write_bytes(b"from-file")
    assert _load(tmp_path, {"TAILOR_X": "from-env", "TAILOR_X_FILE": str(mounted)}, False) == b"from-env"
    assert _load(tmp_path, {"TAILOR_X_FILE": str(mounted)}, False) == b"from-file"
    with pytest.raises(SecretMissing) as err:
        _load(tmp_path, {"TAILOR_X_FILE": str(tmp_path / "absent")}, True)
    assert err.value.source == "TAILOR_X_FILE"


def test_nothing_is_generated_outside_the_embedded_stack(tmp_path: Path) -> None:
    with pytest.raises(SecretMissing) as err:
        _load(tmp_path, {}, allow_generate=False)
    assert "TAILOR_X" in str(err.value) and not (tmp_path / "keys").exists()
    assert _load(tmp_path, {}, allow_generate=True) == b"generated"
    assert stat.S_IMODE((tmp_path / "keys" / "x.key").stat().st_mode) == 0o600
    assert _load(tmp_path, {}, allow_generate=False) == b"generated"  # made once, then read


def test_the_contact_key_uses_the_loader(tmp_path: Path) -> None:
    with pytest.raises(ContactKeyError) as err:  # PostgreSQL replicas: configure it
        load_contact_key(None, tmp_path, allow_generate=False, environ={})
    assert ENV_KEY in str(err.value) and not (tmp_path / "keys" / KEY_FILE).exists()
    mounted = tmp_path / "contact.key"
    mounted.write_bytes(KEY)
    assert load_contact_key(None, tmp_path, allow_generate=False,
                            environ={f"{ENV_KEY}_FILE": str(mounted)}) == bytes(range(32))
    made = load_contact_key(None, tmp_path, allow_generate=True, environ={})
    assert len(made) == 32


def test_redcap_secrets_use_the_loader_and_a_missing_mounted_file_is_an_error(tmp_path: Path) -> None:
    from gateway.redcap.settings import RedcapSettings

    mounted = tmp_path / "token"
    mounted.write_text("ABC123\n")
    assert RedcapSettings(token_file=mounted).api_token() == "ABC123"
    assert RedcapSettings().trigger_secret() is None  # not configured: the integration is off
    with pytest.raises(SecretMissing) as err:  # configured but unreadable: say so
        RedcapSettings(det_secret_file=tmp_path / "absent").trigger_secret()
    assert err.value.source == "TAILOR_REDCAP_DET_SECRET_FILE"
