"""The bus and digest keys made with the commands deploy/README.md gives are the keys the
services load from their `TAILOR_X_FILE` mounts: what is sealed to a consumer with its
public key opens with its private key, and only with it."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from services.core.digests import env_name as digest_env
from services.core.digests import load_digest_key
from services.core.sealing import (
    RECIPIENTS,
    BusKeyError,
    UnsealError,
    env_name,
    load_keyring,
    load_recipient,
)

from .conftest import ROOT

pytestmark = pytest.mark.deploy
NOWHERE = Path("/nonexistent")  # no embedded default: keys only from the configured files


def _readme_key_commands() -> str:
    """The shell lines of the README's key-material step that make the bus and digest keys."""
    text = (ROOT / "deploy" / "README.md").read_text()
    start = text.index("   for s in allocation randomization notifications safety reports; do   #")
    end = text.index("\n", text.index("openssl rand -base64 32", start))
    return textwrap.dedent(text[start:end])


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    (tmp_path / "keys").mkdir()
    subprocess.run(["bash", "-euc", _readme_key_commands()], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    return tmp_path / "keys"


def test_the_documented_bus_keys_seal_and_open(keys: Path) -> None:
    for service in RECIPIENTS:
        environ = {f"{env_name(service, public=False)}_FILE": str(keys / f"bus-{service}.key"),
                   f"{env_name(service, public=True)}_FILE": str(keys / f"bus-{service}.pub")}
        recipient = load_recipient(service, NOWHERE, embedded=False, environ=environ)
        keyring = load_keyring(service, NOWHERE, embedded=False, environ=environ)
        sealed = recipient.seal(b"saved form", subject="trial.v1.redcap.x", record="1001")
        assert keyring.open(sealed, subject="trial.v1.redcap.x", record="1001") == b"saved form"
    other = load_keyring("safety", NOWHERE, embedded=False, environ={
        f"{env_name('safety', public=False)}_FILE": str(keys / "bus-safety.key")})
    sealed = load_recipient("reports", NOWHERE, embedded=False, environ={
        f"{env_name('reports', public=True)}_FILE": str(keys / "bus-reports.pub")}).seal(
        b"x", subject="s", record="1")
    with pytest.raises(UnsealError):
        other.open(sealed, subject="s", record="1")


def test_the_documented_digest_keys_load(keys: Path) -> None:
    ids = set()
    for holder in ("gateway", "safety"):
        key = load_digest_key(holder, NOWHERE, embedded=False,
                              environ={f"{digest_env(holder)}_FILE": str(keys / f"{holder}-digest.key")})
        ids.add(key.key_id)
    assert len(ids) == 2


def test_a_public_key_where_the_private_one_belongs_is_refused_naming_the_setting(keys: Path) -> None:
    name = f"{env_name('allocation', public=False)}_FILE"
    with pytest.raises(BusKeyError, match=name):
        load_keyring("allocation", NOWHERE, embedded=False,
                     environ={name: str(keys / "bus-allocation.pub")})
