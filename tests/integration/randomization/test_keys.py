"""The list key: environment, mounted secret, or generated once for the embedded default;
never in the database, never in a log line."""

from __future__ import annotations

import base64
import io
import stat
import sys
from pathlib import Path

import pytest
import structlog
from sqlalchemy import text

from services.core.logging import configure_logging
from services.randomization.app import SPEC
from services.randomization.keys import ENV_KEY, ENV_KEY_FILE, KEY_FILE, ListKeyError, load_list_key
from tailor_cli.natsd import NatsServer
from tests.support.harness import running_service

from .support import sealed_list

RAW = bytes(range(32))
TEXT = base64.b64encode(RAW).decode()


def test_key_comes_from_the_environment_or_a_mounted_file(tmp_path: Path) -> None:
    assert load_list_key(tmp_path, allow_generate=False, environ={ENV_KEY: TEXT}).material == RAW
    secret = tmp_path / "mounted"
    secret.write_text(TEXT + "\n")
    assert load_list_key(tmp_path, allow_generate=False,
                         environ={ENV_KEY_FILE: str(secret)}).material == RAW
    secret.write_bytes(RAW)
    key = load_list_key(tmp_path, allow_generate=False, environ={ENV_KEY_FILE: str(secret)})
    assert key.material == RAW and TEXT not in repr(key) and key.key_id in repr(key)
    assert not (tmp_path / "keys").exists()


def test_a_bad_key_is_refused_naming_the_variable_not_the_value(tmp_path: Path) -> None:
    short = base64.b64encode(b"too short").decode()
    with pytest.raises(ListKeyError) as err:
        load_list_key(tmp_path, allow_generate=True, environ={ENV_KEY: short})
    assert err.value.source == ENV_KEY and short not in str(err.value)
    with pytest.raises(ListKeyError) as err:
        load_list_key(tmp_path, allow_generate=False, environ={ENV_KEY_FILE: str(tmp_path / "none")})
    assert err.value.source == ENV_KEY_FILE


def test_without_a_configured_key_only_the_embedded_default_makes_one(tmp_path: Path) -> None:
    with pytest.raises(ListKeyError) as err:  # PostgreSQL: a key on a pod's disk would be lost
        load_list_key(tmp_path, allow_generate=False, environ={})
    assert ENV_KEY in str(err.value) and not (tmp_path / "keys" / KEY_FILE).exists()
    made = load_list_key(tmp_path, allow_generate=True, environ={})
    path = tmp_path / "keys" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_list_key(tmp_path, allow_generate=True, environ={}).material == made.material


async def test_embedded_service_generates_its_key_and_never_stores_or_logs_it(
        tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY)
    logs = io.StringIO()
    db = tmp_path / "randomization.db"
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{db}") as svc:
        configure_logging("randomization", level="debug", json=True)
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=logs))
        try:
            await sealed_list(svc, 8)
            await svc.client.post("/v1/allocations", headers=svc.as_role("study_manager"),
                                  json={"record": "E1", "cluster": "DYS", "reason": "bus down"})
            with svc.kernel.engine.connect() as conn:
                dump = "\n".join(conn.connection.driver_connection.iterdump())  # type: ignore[union-attr]
                assert conn.execute(text("SELECT count(*) FROM allocation")).scalar() == 1
        finally:
            structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    key = svc.deps.context.key
    path = tmp_path / "keys" / KEY_FILE
    assert path.exists() and key.source == str(path)
    for form in (base64.b64encode(key.material).decode(), key.material.hex()):
        assert form not in dump and form not in logs.getvalue()
    assert key.material.hex().upper() not in dump  # iterdump writes blobs as X'…'
