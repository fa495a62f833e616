"""Running the emulator inside a test process: uvicorn in a background thread on a free port.

    with running_emulator(tmp_path / "redcap.sqlite", dictionary_dir=PERPAIN_REDCAP,
                          project_id=101) as rc:
        project = redcap.Project(rc.api_url, rc.token)
        rc.save_form("consent", record="1", event="t0_baseline_arm_1", values={...})
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from .app import create_app
from .emulator import Emulator

PERPAIN_REDCAP = Path(__file__).resolve().parents[2] / "protocols" / "perpain-pilot" / "redcap"


class SettableClock:
    """A clock for the emulator that tests can move (REDCap's log has second resolution)."""

    def __init__(self, start: datetime | None = None):
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now or datetime.now(UTC)

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def reset(self) -> None:
        """Back to the real time."""
        with self._lock:
            self._now = None

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now = (self._now or datetime.now(UTC)) + timedelta(seconds=seconds)
            return self._now


@dataclass
class RunningEmulator:
    """A live emulator: its URLs, the project created at start, and helpers for its own endpoints."""

    base_url: str
    app: FastAPI
    project_id: int | None
    token: str | None

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    @property
    def emulator(self) -> Emulator:
        emulator: Emulator = self.app.state.emulator
        return emulator

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, self.base_url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def save_form(self, instrument: str, *, values: dict[str, str], record: str | None = None,
                  event: str | None = None, repeat_instance: int | str | None = None,
                  complete: str = "2", username: str = "site_user", fire_det: bool = True,
                  dag: str = "", project_id: int | None = None) -> dict[str, Any]:
        """Save a form as a person would; `fire_det=False` plays a lost trigger."""
        body = {"values": values, "record": record, "event": event,
                "repeat_instance": repeat_instance, "complete": complete, "username": username,
                "fire_det": fire_det, "dag": dag}
        pid = project_id or self.project_id
        answer: dict[str, Any] = self._call(
            "POST", f"/emulator/projects/{pid}/forms/{instrument}", json=body)
        return answer

    def set_det_url(self, url: str | None, project_id: int | None = None) -> None:
        pid = project_id or self.project_id
        self._call("PUT", f"/emulator/projects/{pid}/det", json={"url": url})

    def det_deliveries(self, project_id: int | None = None) -> list[dict[str, Any]]:
        """Every DET the project sent: time, url, payload, status_code (None) and error."""
        pid = project_id or self.project_id
        deliveries: list[dict[str, Any]] = self._call("GET", f"/emulator/projects/{pid}/det/deliveries")
        return deliveries

    def set_fault(self, mode: str, *, status: int = 500, seconds: float = 0.0,
                  remaining: int | None = None, contents: list[str] | None = None) -> None:
        self._call("PUT", "/emulator/faults", json={
            "mode": mode, "status": status, "seconds": seconds, "remaining": remaining,
            "contents": contents or []})

    def clear_fault(self) -> None:
        self._call("DELETE", "/emulator/faults")


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free port in a daemon thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_emulator(db_path: str | Path, *, dictionary_dir: str | Path | None = None,
                     project_id: int | None = None, token: str | None = None,
                     det_url: str | None = None, super_token: str | None = None,
                     clock: Callable[[], datetime] | None = None) -> Iterator[RunningEmulator]:
    """Start the emulator (and the project of `dictionary_dir`) for the duration of the block."""
    app = create_app(db_path, dictionary_dir=dictionary_dir, project_id=project_id, token=token,
                     det_url=det_url, super_token=super_token, clock=clock)
    emulator: Emulator = app.state.emulator
    pid = project_id if project_id is not None else (
        emulator.store.project_ids()[0] if emulator.store.project_ids() else None)
    api_token = token or (emulator.store.tokens_of(pid)[0][0] if pid is not None else None)
    with serve_in_thread(app) as base_url:
        yield RunningEmulator(base_url, app, pid, api_token)
    emulator.store.close()
