"""The gateway, listening on a port, against the REDCap emulator and a real nats-server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from gateway.app import SPEC as GATEWAY
from sim.redcap.testing import PERPAIN_REDCAP, RunningEmulator, running_emulator
from tailor_cli.natsd import NatsServer
from tests.support.harness import served_service

PROJECT_ID = 101


@dataclass
class Stack:
    redcap: RunningEmulator
    gateway_url: str
    gateway: FastAPI
    det_url: str
    secret: str
    nats_url: str

    @property
    def engine(self):  # type: ignore[no-untyped-def]
        return self.gateway.state.kernel.engine


@pytest.fixture
def stack(tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch,
          request: pytest.FixtureRequest) -> Iterator[Stack]:
    options = getattr(request, "param", {})
    secret = secrets.token_urlsafe(24)
    with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP,
                          project_id=PROJECT_ID) as redcap:
        monkeypatch.setenv("TAILOR_REDCAP_API_URL", redcap.api_url)
        monkeypatch.setenv("TAILOR_REDCAP_TOKEN", redcap.token)
        monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", secret)
        monkeypatch.setenv("TAILOR_REDCAP_TIMEOUT_SECONDS", str(options.get("timeout", 2)))
        monkeypatch.setenv("TAILOR_REDCAP_SWEEP_INTERVAL_SECONDS", str(options.get("sweep", 3600)))
        monkeypatch.setenv("TAILOR_REDCAP_RETRY_BASE_SECONDS", str(options.get("retry_base", 0.2)))
        monkeypatch.setenv("TAILOR_REDCAP_RETRY_CAP_SECONDS", str(options.get("retry_cap", 1)))
        monkeypatch.setenv("TAILOR_REDCAP_RECOVERY_PROBE_SECONDS", str(options.get("probe", 2)))
        with served_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                            database_url=f"sqlite:///{tmp_path}/gateway.db") as (url, app):
            det_url = f"{url}/redcap/det?secret={secret}"
            redcap.set_det_url(det_url)
            yield Stack(redcap, url, app, det_url, secret, nats_server.url)


def baseline_values(record_age: int = 44) -> dict[str, dict[str, str]]:
    """A participant's baseline, form by form, as site staff would enter it."""
    mpid = {f"mpid_{p}_{i}": "3" for p, n in ((1, 22), (2, 11), (3, 18)) for i in range(1, n + 1)}
    return {
        "screening": {"scr_eligible": "1"},
        "consent": {"cons_given": "1", "cons_email": "p@example.org"},
        "demographics": {"dem_age": str(record_age), "dem_sex": "1"},
        "mpid": mpid,
    }
