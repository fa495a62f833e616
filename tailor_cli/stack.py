"""The embedded local stack: nats-server and every service as its own process.

Children run in their own sessions so a Ctrl-C reaches only `tailor up`, which then
stops them in reverse order (SIGTERM, a grace period, SIGKILL) and leaves no orphan.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .natsd import NatsServer, free_port


@dataclass
class Child:
    name: str
    argv: list[str]
    url: str | None = None  # probed at /readyz when set
    proc: subprocess.Popen[bytes] | None = None


def port_for(name: str, preferred: int | None = None) -> int:
    configured = os.environ.get(f"TAILOR_{name.upper()}_PORT")
    if configured:
        return int(configured)
    if preferred:
        import socket

        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    return free_port()


@dataclass
class LocalStack:
    home: Path
    services: list[str]
    protocol_file: Path = Path("protocols/perpain-pilot.yaml")
    extra_env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, *, timeout: float = 60.0) -> None:
        self.home = self.home.resolve()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        nats_port = int(os.environ.get("TAILOR_NATS_PORT", 0)) or free_port()
        self.nats = NatsServer(store_dir=self.home / "nats", port=nats_port,
                               log_file=self.home / "logs" / "nats-server.log").start()
        ports = {s: port_for(s, 8000 if s == "gateway" else None) for s in self.services}
        self.env = {
            **os.environ,
            "TAILOR_HOME": str(self.home),
            "TAILOR_NATS_URL": self.nats.url,
            "TAILOR_PROTOCOL_FILE": str(self.protocol_file.resolve()),
            **{f"TAILOR_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()},
            **self.extra_env,
        }
        for name in self.services:
            self.spawn(Child(name, [sys.executable, "-m", "tailor_cli", "serve", name,
                                    "--port", str(ports[name])],
                             url=f"http://127.0.0.1:{ports[name]}"))
        self.wait_ready(timeout)
        self._write_state()

    def spawn(self, child: Child) -> Child:
        log = open(self.home / "logs" / f"{child.name}.log", "ab")
        child.proc = subprocess.Popen(child.argv, env=self.env, stdout=log, stderr=log,
                                      start_new_session=True)
        self.children.append(child)
        return child

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [c for c in self.children if c.url]
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for child in list(pending):
                    if child.proc and child.proc.poll() is not None:
                        raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; "
                                           f"see {self.home / 'logs' / (child.name + '.log')}")
                    try:
                        if client.get(f"{child.url}/readyz").status_code == 200:
                            pending.remove(child)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout}s: {[c.name for c in pending]}")
                time.sleep(0.1)

    def dead(self) -> list[str]:
        return [c.name for c in self.children if c.proc and c.proc.poll() is not None]

    def pids(self) -> dict[str, int]:
        found = {c.name: c.proc.pid for c in self.children if c.proc}
        if self.nats and self.nats.proc:
            found["nats-server"] = self.nats.proc.pid
        return found

    def _write_state(self) -> None:
        state = {"nats_url": self.nats.url if self.nats else None, "pids": self.pids(),
                 "urls": {c.name: c.url for c in self.children if c.url}}
        (self.home / "stack.json").write_text(json.dumps(state, indent=2))

    def stop(self, *, grace: float = 20.0) -> None:
        for child in reversed(self.children):
            if child.proc and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        if self.nats:
            self.nats.stop()
        (self.home / "stack.json").unlink(missing_ok=True)
