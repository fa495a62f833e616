"""The stack as production runs it, on this machine: a 3-node nats-server cluster with
JetStream, NKey users with the permissions `tailor nats accounts` derives and TLS to the
clients (certificates made here), the streams and consumers created by `tailor nats
provision` alone (3 replicas), every service on its own PostgreSQL database and role,
`tailor migrate` run concurrently, two replicas of each service (reports: one, it reads in
stream order), each process given only its own keys and seed, from files.

The routes between the NATS nodes are mutual TLS with the same certificate (as the
manifests have them). Not yet here: a load balancer in front of the replicas (the gateway
calls replica 1 of each service; REDCap's DETs go to gateway replica 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from services.core.bus import TlsFiles
from services.core.bus_contract import PROVISIONER
from services.core.digests import env_name as digest_env
from services.core.internal_token import ensure_keypair
from services.core.nats_auth import (
    AUTH_CONF,
    TlsMaterial,
    seed_file,
    tls_block,
    write_accounts,
    write_tls,
)
from services.core.sealing import RECIPIENTS, ensure_bus_keys, env_name, key_files
from services.randomization.keys import new_key_text
from tailor_cli import registry
from tailor_cli.natsd import free_port, nats_server_binary, wait_for_port
from tailor_cli.stack import Child, LocalStack

SERVICES = ("gateway", "allocation", "randomization", "notifications", "safety", "reports")
REPLICAS = 2
SINGLE = ("reports",)  # one durable consumer read in stream order: never two at once
# Whose public bus keys a producer seals to (deploy/k8s/base: the same mounts).
SEALS_TO = {"gateway": ("allocation", "notifications", "safety", "reports"),
            "allocation": ("randomization",)}
DIGESTS = ("gateway", "safety")


def replicas_of(service: str) -> int:
    return 1 if service in SINGLE else REPLICAS


@dataclass
class NatsNode:
    name: str
    folder: Path
    routes: list[int]
    security: str = ""  # the `authorization {}` and `tls {}` blocks every node shares
    route_tls: str = ""  # the cluster's `tls {}` block: mutual TLS between the nodes
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nats.conf"
        routes = ", ".join(f"nats://127.0.0.1:{p}" for p in self.routes if p != self.cluster_port)
        conf.write_text(
            f"server_name: {self.name}\nlisten: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.http_port}\n"
            f"jetstream {{ store_dir: {self.folder / 'js'} }}\n"
            f"cluster {{ name: tailor, listen: 127.0.0.1:{self.cluster_port},\n"
            f"  {self.route_tls}  routes: [{routes}] }}\n"
            + self.security)
        log = open(self.folder / "nats.log", "ab")
        self.proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], stdout=log,
                                     stderr=log, start_new_session=True)
        wait_for_port(self.port)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def route_tls_block(material: TlsMaterial) -> str:
    """Routes as deploy/k8s/base/nats.yaml has them: the server certificate on both ends,
    each node verifying the other's against the CA (`verify: true`)."""
    return ("tls {\n"
            f"    cert_file: {json.dumps(str(material.cert))}\n"
            f"    key_file: {json.dumps(str(material.key))}\n"
            f"    ca_file: {json.dumps(str(material.ca))}\n"
            "    verify: true\n    timeout: 3\n  }\n")


class NatsCluster:
    """Three nodes with the users of `tailor nats accounts` (seeds under `auth/`) and a CA
    and server certificate made here: anonymous and plain-text clients are refused."""

    def __init__(self, folder: Path, size: int = 3) -> None:
        self.auth = folder / "auth"
        write_accounts(self.auth, registry.bus_grants())
        self.tls = write_tls(self.auth / "tls")
        security = (self.auth / AUTH_CONF).read_text() + tls_block(self.tls)
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [NatsNode(f"n{i + 1}", folder / f"n{i + 1}", cluster_ports, security,
                               route_tls_block(self.tls), cluster_port=cluster_ports[i])
                      for i in range(size)]

    def seed(self, user: str) -> Path:
        return seed_file(self.auth, user)

    @property
    def tls_files(self) -> TlsFiles:
        return TlsFiles(ca=self.tls.ca)

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout: float = 60) -> NatsCluster:
        for node in self.nodes:
            node.start()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:  # JetStream has a meta leader on every node
            for node in self.nodes:
                while True:
                    try:
                        if client.get(f"http://127.0.0.1:{node.http_port}/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"NATS cluster not ready; see {node.folder / 'nats.log'}")
                    time.sleep(0.2)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def create_databases(admin_url: str, prefix: str) -> dict[str, str]:
    """One database and one login role per service, the role owning its database."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    urls = {}
    host = admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    with engine.connect() as conn:
        for service in SERVICES:
            name = f"{prefix}_{service}"
            conn.execute(text(f'CREATE ROLE "{name}" LOGIN'))
            conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
            urls[service] = f"postgres://{name}@{host}/{name}"  # as operators write it
    engine.dispose()
    return urls


def drop_databases(admin_url: str, prefix: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        for service in SERVICES:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{service}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{prefix}_{service}"'))
    engine.dispose()


class ProductionStack(LocalStack):
    """LocalStack's simulators and process handling, with production's topology."""

    def __init__(self, home: Path, database_urls: dict[str, str], extra_env: dict[str, str]) -> None:
        super().__init__(home=home, services=list(SERVICES), extra_env=extra_env)
        self.database_urls = database_urls
        self.cluster: NatsCluster | None = None

    def start(self, *, timeout: float = 240.0) -> None:
        self.home = self.home.resolve()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        keys = ensure_keypair(self.home / "keys")
        list_key = self.home / "keys" / "list-key"
        list_key.write_text(new_key_text())
        ensure_bus_keys(self.home / "keys")
        for holder in DIGESTS:
            (self.home / "keys" / f"{holder}-digest.key").write_text(new_key_text())
        self.cluster = NatsCluster(self.home / "nats").start()
        ports = {f"{s}-{i}": free_port() for s in SERVICES for i in range(1, replicas_of(s) + 1)}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
        self.env.update({
            "TAILOR_HOME": str(self.home),
            "TAILOR_NATS_URL": self.cluster.urls,
            "TAILOR_NATS_TLS_CA_FILE": str(self.cluster.tls.ca),
            "TAILOR_NATS_STREAM_REPLICAS": "3",
            "TAILOR_MIGRATE_ON_START": "false",
            "TAILOR_PROTOCOL_FILE": str(Path("protocols/perpain-pilot.yaml").resolve()),
            "TAILOR_INTERNAL_TOKEN_PUBLIC_KEY_FILE": str(keys.public_key),
            "TAILOR_RANDOMIZATION_LIST_KEY_FILE": str(list_key),
            "TAILOR_NOTIFICATIONS_CONTACT_KEY": new_key_text(),
            "TAILOR_DB_POOL_SIZE": "3",
            "TAILOR_DB_MAX_OVERFLOW": "2",
            **{f"TAILOR_{s.upper()}_DATABASE_URL": url for s, url in self.database_urls.items()},
            **{f"TAILOR_{s.upper()}_URL": f"http://127.0.0.1:{ports[f'{s}-1']}"
               for s in SERVICES if s != "gateway"},
        })
        self.migrate_concurrently()
        self.provision()
        # A free port for the emulator: its usual 8300 may be another stack's on this machine.
        previous = os.environ.get("TAILOR_REDCAP_PORT")
        os.environ["TAILOR_REDCAP_PORT"] = str(free_port())
        try:
            self._start_sims(ports["gateway-1"])
        finally:
            if previous is None:
                os.environ.pop("TAILOR_REDCAP_PORT", None)
            else:
                os.environ["TAILOR_REDCAP_PORT"] = previous
        self.env.update(self.extra_env)
        self.env.pop("TAILOR_SIM_SMS_SECRET", None)  # the simulator's, set by _start_sims
        for name, port in ports.items():
            service = name.rsplit("-", 1)[0]
            url = f"http://127.0.0.1:{port}"
            self.spawn(Child(name, [sys.executable, "-m", "tailor_cli", "serve", service,
                                    "--port", str(port)], url=url, ready=f"{url}/readyz",
                             secrets=self.own_secrets(service, keys.private_key)))
        self.wait_ready(timeout)

    def own_secrets(self, service: str, token_key: Path) -> dict[str, str]:
        """What a pod of `service` mounts in deploy/k8s/base, and nothing more."""
        assert self.cluster is not None
        folder = self.home / "keys"
        own = {"TAILOR_NATS_CREDS_FILE": str(self.cluster.seed(service))}
        if service in RECIPIENTS:
            own[f"{env_name(service, public=False)}_FILE"] = str(key_files(folder, service)[0])
        for peer in SEALS_TO.get(service, ()):
            own[f"{env_name(peer, public=True)}_FILE"] = str(key_files(folder, peer)[1])
        if service in DIGESTS:
            own[f"{digest_env(service)}_FILE"] = str(folder / f"{service}-digest.key")
        if service == "gateway":
            own["TAILOR_INTERNAL_TOKEN_PRIVATE_KEY_FILE"] = str(token_key)
        return own

    def provision(self) -> None:
        """`tailor nats provision` with the provisioner's seed, as the Job does."""
        assert self.cluster is not None
        done = subprocess.run(
            [sys.executable, "-m", "tailor_cli", "nats", "provision"], capture_output=True,
            text=True, timeout=300,
            env={**self.env, "TAILOR_NATS_CREDS_FILE": str(self.cluster.seed(PROVISIONER))})
        if done.returncode != 0:
            raise RuntimeError(f"provisioning failed: {done.stdout}{done.stderr}")

    def migrate_concurrently(self) -> None:
        """Both replicas' `tailor migrate` at once, as init containers would run."""
        runs = [subprocess.Popen([sys.executable, "-m", "tailor_cli", "migrate", s], env=self.env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for s in SERVICES for _ in range(REPLICAS)]
        failed = [(p.args, p.stderr.read() if p.stderr else "") for p in runs
                  if p.wait(timeout=900) != 0]
        if failed:
            raise RuntimeError(f"concurrent migrations failed: {failed}")

    def stop(self, *, grace: float = 20.0) -> None:
        super().stop(grace=grace)
        if self.cluster:
            self.cluster.stop()
