"""How a process starts in production: refused settings in one line, bounded NATS waits,
SIGTERM always heard, NATS passwords never logged, old NATS servers refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.bus import BusUnavailable, check_server_version, redact_url
from services.core.db import make_engine, normalise_database_url
from services.core.digests import env_name as digest_env
from services.core.sealing import RECIPIENTS
from services.core.sealing import env_name as sealing_env
from tailor_cli.settings_catalog import settings_problem, unknown_variables

pytestmark = pytest.mark.deploy
ROOT = Path(__file__).resolve().parents[2]
CLOSED_PORT_URL = "nats://tailor:hunter2-secret@127.0.0.1:9"  # discard port: nothing listens


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update({"PYTHONPATH": str(ROOT), "TAILOR_HOME": str(tmp_path / "home"), **extra})
    return env


def _tailor(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    # From a folder that is not the checkout: the protocol comes with the package.
    return subprocess.run([sys.executable, "-m", "tailor_cli", *args], cwd=tmp_path,
                          env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=120)


def test_a_misspelt_setting_is_refused_naming_it(tmp_path: Path) -> None:
    done = _tailor(tmp_path, "serve", "safety", TAILOR_NATS_ULR="nats://x:4222")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "TAILOR_NATS_ULR: not a Tailor setting (misspelt?); `tailor settings` lists them"]


def test_an_invalid_value_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    done = _tailor(tmp_path, "migrate", "safety", TAILOR_DB_POOL_SIZE="0")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("TAILOR_DB_POOL_SIZE: ")


def test_known_families_and_secret_files_are_accepted() -> None:
    environ = {"TAILOR_NOTIFICATIONS_SMTP_PASSWORD_FILE": "/s", "TAILOR_SIM_SMS_SECRET": "x",
               "TAILOR_TEST_POSTGRES_URL": "x", "TAILOR_SAFETY_URL": "http://safety:8000",
               "TAILOR_INTERNAL_TOKEN_PUBLIC_KEY_FILE": "/k", "TAILOR_NATS_CREDS_FILE": "/c",
               "PATH": "/bin"}
    assert unknown_variables(environ) == []
    assert settings_problem(environ) is None
    assert unknown_variables({"TAILOR_LOG_LEVL": "info"}) == ["TAILOR_LOG_LEVL"]


def test_bus_digest_console_and_reports_settings_are_known() -> None:
    environ = {f"{sealing_env(s, public=public)}_FILE": "/k"
               for s in RECIPIENTS for public in (True, False)}
    environ |= {f"{digest_env(s)}_FILE": "/k" for s in ("gateway", "safety")}
    environ |= {"TAILOR_CONSOLE_IDLE_MINUTES": "30", "TAILOR_CONSOLE_OIDC_CLIENT_ID": "tailor",
                "TAILOR_REPORTS_DATABASE_URL_FILE": "/db", "TAILOR_REPORTS_URL": "http://r:8000",
                "TAILOR_REPORTS_METRICS_REFRESH_SECONDS": "15",
                "TAILOR_REDCAP_SERVICE_USERNAME": "tailor_service"}
    assert unknown_variables(environ) == []
    # This test's own environment: the autouse fixture configures every bus and digest key
    # as a deployment does.
    assert unknown_variables() == []
    assert unknown_variables({"TAILOR_SAFETY_BUS_KEYFILE": "/k"}) == ["TAILOR_SAFETY_BUS_KEYFILE"]


def test_unreachable_nats_gives_up_after_the_configured_attempts(tmp_path: Path) -> None:
    done = _tailor(tmp_path, "serve", "safety", "--port", "0",
                   TAILOR_NATS_URL=CLOSED_PORT_URL, TAILOR_NATS_CONNECT_ATTEMPTS="2")
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    failed = [line for line in lines if "service.start_failed" in line]
    assert len(failed) == 1 and "TAILOR_NATS_URL" in failed[0]
    assert sum("bus.connect_failed" in line for line in lines) == 2
    assert "hunter2" not in done.stderr and "Traceback" not in done.stderr


def test_sigterm_ends_a_process_waiting_for_nats(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tailor_cli", "serve", "safety", "--port", "0"], cwd=tmp_path,
        env=_env(tmp_path, TAILOR_NATS_URL=CLOSED_PORT_URL, TAILOR_NATS_CONNECT_ATTEMPTS="100000"),
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first logged failure: it is now waiting to retry
            if "bus.connect_failed" in line:
                break
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert returncode != 0


def test_nats_passwords_are_redacted_for_logs() -> None:
    assert redact_url("nats://u:p@a:4222, tls://b:4222") == "nats://***@a:4222,tls://b:4222"
    assert redact_url("nats://token@a") == "nats://***@a"


@pytest.mark.parametrize("version", [(2, 9, 25), (1, 4, 0)])
def test_nats_older_than_2_10_is_refused(version: tuple[int, int, int]) -> None:
    with pytest.raises(BusUnavailable, match=r"TAILOR_NATS_URL: nats-server .* too old"):
        check_server_version(version)


def test_nats_2_10_and_newer_are_accepted() -> None:
    check_server_version((2, 10, 0))
    check_server_version((3, 0, 1))


def test_postgres_urls_are_normalised() -> None:
    assert normalise_database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_pool_size_is_a_setting() -> None:
    engine = make_engine("postgres://u@127.0.0.1/db", pool_size=3, max_overflow=1)
    assert (engine.pool.size(), engine.pool._max_overflow) == (3, 1)  # type: ignore[attr-defined]
    engine.dispose()
