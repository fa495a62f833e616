"""Payloads sealed to one consumer open only there, only for the subject and record they
were sealed for; keys come from the environment or the embedded default's files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from services.core.sealing import (
    BusKeyError,
    Keyring,
    UnsealError,
    ensure_bus_keys,
    key_files,
    load_keyring,
    load_recipient,
)

SUBJECT = "trial.v1.allocation.cluster_assigned"


@pytest.fixture
def keyring() -> Keyring:
    return Keyring("randomization", X25519PrivateKey.generate())


def test_sealed_value_opens_with_the_consumers_key_only(keyring: Keyring) -> None:
    sealed = keyring.recipient().seal_json({"cluster": "DYS"}, subject=SUBJECT, record="P1")
    assert "DYS" not in sealed and sealed.startswith(keyring.key_id + ".")
    assert keyring.open_json(sealed, subject=SUBJECT, record="P1") == {"cluster": "DYS"}
    again = keyring.recipient().seal_json({"cluster": "DYS"}, subject=SUBJECT, record="P1")
    assert again != sealed  # a fresh ephemeral key each time: equal clusters look different
    other = Keyring("randomization", X25519PrivateKey.generate())
    with pytest.raises(UnsealError, match="sealed to bus key"):
        other.open(sealed, subject=SUBJECT, record="P1")


@pytest.mark.parametrize(("subject", "record"), [(SUBJECT, "P2"),
                                                 ("trial.v1.redcap.form_saved_for_safety", "P1")])
def test_a_sealed_value_moved_to_another_record_or_subject_does_not_open(
        keyring: Keyring, subject: str, record: str) -> None:
    sealed = keyring.recipient().seal(b"x", subject=SUBJECT, record="P1")
    with pytest.raises(UnsealError, match="does not open"):
        keyring.open(sealed, subject=subject, record=record)


def test_a_tampered_value_does_not_open(keyring: Keyring) -> None:
    sealed = keyring.recipient().seal(b"payload", subject=SUBJECT, record="P1")
    key_id, body = sealed.split(".", 1)
    flipped = body[:-6] + ("A" if body[-6] != "A" else "B") + body[-5:]
    for bad in (f"{key_id}.{flipped}", f"{key_id}.not base64!", f"{key_id}."):
        with pytest.raises(UnsealError):
            keyring.open(bad, subject=SUBJECT, record="P1")


def test_the_embedded_default_generates_owner_only_keys_once(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    ensure_bus_keys(folder, ("safety",))
    private, _public = key_files(folder, "safety")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    first = private.read_bytes()
    ensure_bus_keys(folder, ("safety",))
    assert private.read_bytes() == first
    ring = load_keyring("safety", tmp_path, embedded=True, environ={})
    to = load_recipient("safety", tmp_path, embedded=True, environ={})
    assert ring.key_id == to.key_id
    assert ring.open(to.seal(b"ok", subject="s", record="r"), subject="s", record="r") == b"ok"


def test_outside_the_embedded_default_a_missing_key_refuses_naming_the_setting(
        tmp_path: Path) -> None:
    with pytest.raises(BusKeyError) as private:
        load_keyring("notifications", tmp_path, embedded=False, environ={})
    assert private.value.source == "TAILOR_NOTIFICATIONS_BUS_KEY"
    with pytest.raises(BusKeyError) as public:
        load_recipient("notifications", tmp_path, embedded=False, environ={})
    assert public.value.source == "TAILOR_NOTIFICATIONS_BUS_PUBLIC_KEY"
    assert not (tmp_path / "keys").exists()  # nothing generated on a production setting


def test_configured_keys_come_from_mounted_files_and_wrong_ones_are_named(tmp_path: Path) -> None:
    ensure_bus_keys(tmp_path, ("safety",))
    private, public = key_files(tmp_path, "safety")
    env = {"TAILOR_SAFETY_BUS_KEY_FILE": str(private),
           "TAILOR_SAFETY_BUS_PUBLIC_KEY_FILE": str(public)}
    ring = load_keyring("safety", Path("/nowhere"), embedded=False, environ=env)
    assert ring.key_id == load_recipient("safety", Path("/nowhere"), embedded=False,
                                         environ=env).key_id
    assert "BEGIN" not in repr(ring)
    with pytest.raises(BusKeyError, match="TAILOR_SAFETY_BUS_PUBLIC_KEY: not a PEM public key"):
        load_recipient("safety", tmp_path, embedded=False,
                       environ={"TAILOR_SAFETY_BUS_PUBLIC_KEY": "nonsense"})
    with pytest.raises(BusKeyError, match="TAILOR_SAFETY_BUS_KEY_FILE: file cannot be read"):
        load_keyring("safety", tmp_path, embedded=False,
                     environ={"TAILOR_SAFETY_BUS_KEY_FILE": str(tmp_path / "missing.pem")})
