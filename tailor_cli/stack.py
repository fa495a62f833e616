"""The embedded local stack: nats-server, the outside world from `sim/` (REDCap emulator,
SMTP sink, SMS provider) and every service, each as its own process.

Children run in their own sessions so a Ctrl-C reaches only `tailor up`, which then
stops them in reverse order (SIGTERM, a grace period, SIGKILL) and leaves no orphan.
Secrets of the embedded stack (REDCap token, DET secret, internal-token and bus keys) are
generated under `<home>/secrets` and `<home>/keys` with mode 0600 and passed by file or
in a child's own environment, never on a command line (which `ps` shows to every user).
Everything under `<home>` (databases, mail, logs, the NATS store) is private to the user:
folders 0700, files 0600, and every child runs with umask 077.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from services.core.internal_token import ensure_keypair
from services.core.sealing import ensure_bus_keys

from .natsd import NatsServer, free_port, wait_for_port

REDCAP_DICTIONARY = Path("protocols/perpain-pilot/redcap")


def redcap_project_of(protocol_file: Path) -> tuple[Path, str]:
    """The REDCap project folder beside a protocol file (`protocols/<trial>/redcap`) and the
    project id the protocol names (the emulator serves that project)."""

    data = yaml.safe_load(protocol_file.read_text(encoding="utf-8")) or {}
    project_id = str((data.get("redcap") or {}).get("project_id") or 101)
    return protocol_file.with_suffix("") / "redcap", project_id


PRIVATE_UMASK = 0o077


@dataclass
class Child:
    name: str
    argv: list[str]
    url: str | None = None  # where it listens, as printed
    ready: str | None = None  # a URL that answers 200 when ready, or tcp:<port>
    proc: subprocess.Popen[bytes] | None = None
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # its environment only


def private_home(home: Path) -> None:
    """`home` and what is under it readable by the user only (tightens older runs' files)."""
    home.mkdir(parents=True, exist_ok=True)
    for folder, dirs, files in os.walk(home):
        os.chmod(folder, 0o700)
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, 0o600)
        dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]


def _private_log(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def port_for(name: str, preferred: int | None = None) -> int:
    configured = os.environ.get(f"TAILOR_{name.upper()}_PORT")
    if configured and configured != "0":
        return int(configured)
    if preferred:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", preferred)) != 0:
                return preferred
    return free_port()


def _secret_file(path: Path, value: str) -> Path:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
    return path


@dataclass
class LocalStack:
    home: Path
    services: list[str]
    protocol_file: Path = Path("protocols/perpain-pilot.yaml")
    with_sims: bool = True
    smtp_reply_delay: float = 0.0  # tests: a slow mail server, to catch a dispatch mid-flight
    extra_env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    children: list[Child] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    redcap: dict[str, str] = field(default_factory=dict)

    def start(self, *, timeout: float = 90.0) -> None:
        self.home = self.home.resolve()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        ensure_keypair(self.home / "keys")
        private_home(self.home)
        ensure_bus_keys(self.home / "keys")  # each consumer's key pair for sealed payloads
        nats_port = int(os.environ.get("TAILOR_NATS_PORT", 0)) or free_port()
        self.nats = NatsServer(store_dir=self.home / "nats", port=nats_port,
                               log_file=self.home / "logs" / "nats-server.log",
                               umask=PRIVATE_UMASK).start()
        ports = {s: port_for(s, 8000 if s == "gateway" else None) for s in self.services}
        self.env = {
            **os.environ,
            "TAILOR_HOME": str(self.home),
            "TAILOR_NATS_URL": self.nats.url,
            "TAILOR_PROTOCOL_FILE": str(self.protocol_file.resolve()),
            **{f"TAILOR_{s.upper()}_URL": f"http://127.0.0.1:{p}" for s, p in ports.items()},
        }
        if self.with_sims:
            self._start_sims(ports.get("gateway"))
        self.env.update(self.extra_env)
        for name in self.services:
            url = f"http://127.0.0.1:{ports[name]}"
            self.spawn(Child(name, [sys.executable, "-m", "tailor_cli", "serve", name,
                                    "--port", str(ports[name])], url=url, ready=f"{url}/readyz"))
        self.wait_ready(timeout)
        self._write_state()

    def _start_sims(self, gateway_port: int | None) -> None:
        token = secrets.token_hex(16).upper()
        det_secret = secrets.token_urlsafe(24)
        token_file = _secret_file(self.home / "secrets" / "redcap-token", token)
        secret_file = _secret_file(self.home / "secrets" / "redcap-det-secret", det_secret)
        token, det_secret = token_file.read_text(), secret_file.read_text()  # kept across restarts
        redcap_port = port_for("redcap", 8300)
        det_url = f"http://127.0.0.1:{gateway_port}/redcap/det?secret={det_secret}"
        redcap_url = f"http://127.0.0.1:{redcap_port}"
        folder, project_id = redcap_project_of(self.protocol_file)
        self.spawn(Child("redcap-emulator", [
            sys.executable, "-m", "sim.redcap", "serve", "--port", str(redcap_port),
            "--db", str(self.home / "redcap.sqlite"), "--dictionary", str(folder.resolve()),
            "--project-id", project_id],
            url=redcap_url, ready=f"{redcap_url}/emulator/health",
            secrets={"REDCAP_EMULATOR_TOKEN": token, "REDCAP_EMULATOR_DET_URL": det_url}))
        smtp_port = port_for("smtp", None)
        self.spawn(Child("smtp-sink", [
            sys.executable, "-m", "sim.smtp", "--port", str(smtp_port),
            "--folder", str(self.home / "mail"), "--reply-delay", str(self.smtp_reply_delay)],
            url=f"smtp://127.0.0.1:{smtp_port}",
            ready=f"tcp:{smtp_port}"))
        sms_port = port_for("sms", None)
        sms_secret = _secret_file(self.home / "secrets" / "sms-callback-secret",
                                  secrets.token_urlsafe(24)).read_text()
        # Delivery reports come back through the public edge, like a real provider's would.
        callback = f"http://127.0.0.1:{gateway_port}/api/v1/notifications/v1/sms/callbacks"
        self.env["TAILOR_SIM_SMS_SECRET"] = sms_secret
        self.spawn(Child("sms-provider", [
            sys.executable, "-m", "sim.sms", "--port", str(sms_port), "--delay-min", "0.1",
            "--delay-max", "0.5", "--callback-url", callback],
            url=f"http://127.0.0.1:{sms_port}", ready=f"tcp:{sms_port}"))
        self.redcap = {"url": redcap_url, "api_url": f"{redcap_url}/api/", "token": token,
                       "project_id": project_id}
        self.env.update({
            "TAILOR_REDCAP_API_URL": f"{redcap_url}/api/",
            "TAILOR_REDCAP_TOKEN_FILE": str(token_file),
            "TAILOR_REDCAP_DET_SECRET_FILE": str(secret_file),
            "TAILOR_NOTIFICATIONS_SMTP_HOST": "127.0.0.1",
            "TAILOR_NOTIFICATIONS_SMTP_PORT": str(smtp_port),
            "TAILOR_NOTIFICATIONS_SMS_URL": f"http://127.0.0.1:{sms_port}",
            "TAILOR_NOTIFICATIONS_SMS_CALLBACK_URL": callback,
            "TAILOR_NOTIFICATIONS_SMS_CALLBACK_SECRET": sms_secret,
        })

    def spawn(self, child: Child) -> Child:
        log = _private_log(self.home / "logs" / f"{child.name}.log")
        try:
            child.proc = subprocess.Popen(child.argv, env={**self.env, **child.secrets},
                                          stdout=log, stderr=log, start_new_session=True,
                                          umask=PRIVATE_UMASK)
        finally:
            os.close(log)
        self.children.append(child)
        return child

    def wait_ready(self, timeout: float, *, only: set[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = [c for c in self.children if c.ready and (only is None or c.name in only)]
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for child in list(pending):
                    if child.proc and child.proc.poll() is not None:
                        raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; "
                                           f"see {self.home / 'logs' / (child.name + '.log')}")
                    if self._is_ready(client, child.ready or ""):
                        pending.remove(child)
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout}s: {[c.name for c in pending]}")
                time.sleep(0.1)

    @staticmethod
    def _is_ready(client: httpx.Client, probe: str) -> bool:
        if probe.startswith("tcp:"):
            try:
                wait_for_port(int(probe[4:]), timeout=0.1)
                return True
            except TimeoutError:
                return False
        try:
            return client.get(probe).status_code == 200
        except httpx.HTTPError:
            return False

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one process, as a crash would."""
        proc = self.child(name).proc
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, name: str, *, timeout: float = 60.0) -> None:
        """Start a killed process again with the same command line, and wait until ready."""
        child = self.child(name)
        self.children.remove(child)
        self.spawn(Child(child.name, child.argv, url=child.url, ready=child.ready,
                         secrets=child.secrets))
        self.wait_ready(timeout, only={name})  # another child killed on purpose stays dead

    def url_of(self, name: str) -> str:
        return next(c.url for c in self.children if c.name == name and c.url)

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
        path = self.home / "stack.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(state, indent=2))

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
