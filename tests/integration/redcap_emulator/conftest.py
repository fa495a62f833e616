"""An emulator per test module (uvicorn in a thread), a fresh PerPAIN project per test,
PyCap `Project`s with a response hook that records HTTP status codes, and a DET receiver."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redcap
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from sim.redcap.testing import (
    PERPAIN_REDCAP,
    RunningEmulator,
    SettableClock,
    running_emulator,
    serve_in_thread,
)

SUPER_TOKEN = "5" * 64
FIXTURES = Path(__file__).parent / "fixtures"
BASELINE = "t0_baseline_arm_1"


@dataclass
class StatusLog:
    """HTTP status of every response PyCap received (a `requests` response hook)."""

    codes: list[int] = field(default_factory=list)

    def hook(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.codes.append(response.status_code)

    @property
    def last(self) -> int:
        return self.codes[-1]


@dataclass
class PerpainProject:
    pid: int
    token: str
    api_url: str
    statuses: StatusLog

    def project(self, token: str | None = None) -> redcap.Project:
        return redcap.Project(self.api_url, token or self.token,
                              hooks={"response": [self.statuses.hook]})


@pytest.fixture(scope="module")
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory,
             clock: SettableClock) -> Iterator[RunningEmulator]:
    db = tmp_path_factory.mktemp("redcap") / "emulator.sqlite"
    with running_emulator(db, super_token=SUPER_TOKEN, clock=clock) as rc:
        yield rc


@pytest.fixture
def perpain(emulator: RunningEmulator, clock: SettableClock) -> Iterator[PerpainProject]:
    """A new PerPAIN project (from protocols/perpain-pilot/redcap) with its own token."""
    token = secrets.token_hex(16).upper()
    pid, _ = emulator.emulator.create_from_folder(PERPAIN_REDCAP, token=token)
    yield PerpainProject(pid, token, emulator.api_url, StatusLog())
    clock.reset()


@pytest.fixture
def project(perpain: PerpainProject) -> redcap.Project:
    return perpain.project()


class DetReceiver:
    """A stand-in for the gateway's DET endpoint: records each form post, answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, str]] = []
        self.status = 200
        self.lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/redcap/det")
        async def det(request: Request) -> PlainTextResponse:
            form = await request.form()
            with self.lock:
                self.posts.append({k: str(v) for k, v in form.items()}
                                  | {"?secret": request.query_params.get("secret", "")})
            return PlainTextResponse("ok", status_code=self.status)


@pytest.fixture(scope="module")
def det_server() -> Iterator[tuple[DetReceiver, str]]:
    receiver = DetReceiver()
    with serve_in_thread(receiver.app) as base:
        yield receiver, base


@pytest.fixture
def det(det_server: tuple[DetReceiver, str], emulator: RunningEmulator,
        perpain: PerpainProject) -> DetReceiver:
    """The receiver, cleared, configured as the PerPAIN project's DET URL."""
    receiver, base = det_server
    receiver.posts.clear()
    receiver.status = 200
    emulator.set_det_url(f"{base}/redcap/det?secret=s3cret", project_id=perpain.pid)
    return receiver


def error_message(err: pytest.ExceptionInfo[Exception]) -> str:
    """The message of a PyCap RedcapError: the `error` of a JSON answer, else the text."""
    content = err.value.args[0] if err.value.args else ""
    return str(content["error"]) if isinstance(content, dict) else str(content)
