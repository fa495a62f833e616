"""Production mode on this machine: a cohort entered through the REDCap emulator reaches
two replicas of every service (reports: one) on their own PostgreSQL databases over a
3-node NATS cluster with NKey users, TLS to the clients and mutual TLS between the nodes,
and provisioned streams; one NATS node and one replica of each replicated service are
killed mid-cohort; every participant is allocated exactly once and nothing is lost. Then
randomization's database is restored from a backup older than some allocations, and
`tailor restore reconcile` gives every one of them back, slot for slot."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import pytest
from nats.js.api import StreamInfo

from services.core.bus import DLQ_STREAM, STREAM, Bus
from services.core.bus_contract import PROVISIONER
from services.core.nats_auth import TlsMaterial, write_tls
from services.core.protocol import load_protocol
from sim.cohort import Participant, make_cohort
from tailor_cli.demo.client import Gateway, issue_keys
from tailor_cli.demo.pilot import allocations_in_redcap, enter_cohort

from .stack import REPLICAS, SERVICES, ProductionStack, create_databases, drop_databases, replicas_of

pytestmark = [pytest.mark.production, pytest.mark.postgres, pytest.mark.timeout(1200)]
PROTOCOL = load_protocol("protocols/perpain-pilot.yaml")
EVENT = PROTOCOL.redcap.unique_event_name(PROTOCOL.redcap.baseline_event)
F = PROTOCOL.redcap.fields
ALLOC_FIELDS = (F.allocation_number, F.allocation_module, F.allocation_time)
COHORT = int(os.environ.get("TAILOR_TEST_PRODUCTION_COHORT", "30"))


@pytest.fixture(scope="module")
def stack(postgres_admin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionStack]:
    prefix = f"tailor_prod_{uuid.uuid4().hex[:8]}"
    home: Path = tmp_path_factory.mktemp("production")
    running = ProductionStack(home, create_databases(postgres_admin, prefix), extra_env={
        "TAILOR_REDCAP_SWEEP_INTERVAL_SECONDS": "5",
        "TAILOR_REDCAP_RETRY_BASE_SECONDS": "0.3",
        "TAILOR_REDCAP_RETRY_CAP_SECONDS": "2",
    })
    try:
        running.start()
        yield running
    finally:
        running.stop()
        drop_databases(postgres_admin, prefix)


def _allocated_in_redcap(stack: ProductionStack) -> dict[str, dict[str, str]]:
    return allocations_in_redcap(stack.redcap["api_url"], stack.redcap["token"], ALLOC_FIELDS, EVENT)


async def _stream_info(stack: ProductionStack, stream: str = STREAM) -> StreamInfo:
    assert stack.cluster is not None
    bus = Bus(stack.cluster.urls, PROVISIONER, credentials=stack.cluster.seed(PROVISIONER),
              tls=stack.cluster.tls_files)
    await bus.connect(attempts=5)
    try:
        assert bus.js is not None
        return await bus.js.stream_info(stream)
    finally:
        await bus.close()


async def _dead_letters_by_consumer(stack: ProductionStack) -> dict[str, int]:
    assert stack.cluster is not None
    bus = Bus(stack.cluster.urls, PROVISIONER, credentials=stack.cluster.seed(PROVISIONER),
              tls=stack.cluster.tls_files)
    await bus.connect(attempts=5)
    try:
        assert bus.js is not None
        info = await bus.js.stream_info(DLQ_STREAM, subjects_filter="trial.dlq.>")
        return {s.removeprefix("trial.dlq."): n for s, n in (info.state.subjects or {}).items()}
    finally:
        await bus.close()


async def _anonymous_refused(stack: ProductionStack) -> str:
    """Without a seed the cluster refuses the connection (TLS alone is not enough)."""
    assert stack.cluster is not None
    try:
        nc = await asyncio.wait_for(nats.connect(
            stack.cluster.nodes[0].url, tls=stack.cluster.tls_files.context(),
            allow_reconnect=False, connect_timeout=2), 30)
    except nats.errors.Error as exc:
        return str(exc)
    await nc.close()
    return "connected"


def _route_answer(port: int, tls: TlsMaterial | None, *, client: TlsMaterial | None = None,
                  plaintext: bool = False) -> str:
    """What a would-be node gets from a node's cluster port: 'INFO' when the route is
    accepted, else how it was refused."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if plaintext:
            sock.sendall(b'CONNECT {"name":"intruder"}\r\nPING\r\n')
            try:
                got = sock.recv(4096)
            except OSError as exc:
                return f"refused: {type(exc).__name__}"
            return got.decode()[:4] or "refused: closed"
        assert tls is not None
        context = ssl.create_default_context(cafile=str(tls.ca))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        try:
            with context.wrap_socket(sock, server_hostname="127.0.0.1") as wrapped:
                return wrapped.recv(4096).decode()[:4] or "refused: closed"
        except (ssl.SSLError, OSError) as exc:
            return f"refused: {exc}"


def test_routes_between_the_nodes_are_mutual_tls(stack: ProductionStack,
                                                 tmp_path: Path) -> None:
    assert stack.cluster is not None
    nodes = stack.cluster.nodes
    with httpx.Client(timeout=5) as client:
        for node in nodes:
            cluster = client.get(f"http://127.0.0.1:{node.http_port}/varz").json()["cluster"]
            assert cluster.get("tls_required") and cluster.get("tls_verify"), cluster
            routes = client.get(f"http://127.0.0.1:{node.http_port}/routez").json()["routes"]
            assert {r["remote_name"] for r in routes} == {n.name for n in nodes} - {node.name}
    port, tls = nodes[0].cluster_port, stack.cluster.tls
    assert _route_answer(port, tls, client=tls) == "INFO"  # the nodes' own certificate
    assert _route_answer(port, None, plaintext=True).startswith("refused")
    assert "CERTIFICATE_REQUIRED" in _route_answer(port, tls)  # TLS without a certificate
    stranger = write_tls(tmp_path / "stranger")  # a certificate from another CA
    assert _route_answer(port, tls, client=stranger).startswith("refused")
    log = (nodes[0].folder / "nats.log").read_text()
    assert "TLS route handshake error" in log


def test_every_participant_is_allocated_exactly_once_through_node_and_replica_loss(
        stack: ProductionStack) -> None:
    assert asyncio.run(_stream_info(stack)).config.num_replicas == 3  # a lost node loses nothing
    assert "Authorization Violation" in asyncio.run(_anonymous_refused(stack))
    gateway = Gateway(stack.url_of("gateway-1"),
                      issue_keys(stack.database_urls["gateway"], ["statistician", "study_manager"]))
    listing = gateway.call("statistician", "POST", "/api/v1/randomization/v1/lists", json={})
    gateway.call("statistician", "POST", f"/api/v1/randomization/v1/lists/{listing['id']}/seal")
    cohort: list[Participant] = make_cohort(PROTOCOL, eligible=COHORT, ineligible=0,
                                            unscorable=0, withdrawn=0, seed=29)
    first, second = cohort[: COHORT // 2], cohort[COHORT // 2:]
    enter_cohort(stack.redcap["url"], stack.redcap["project_id"], EVENT, first, duplicates=2)

    # A node of the cluster and one replica of every service die, as crashes would.
    assert stack.cluster is not None
    stack.cluster.nodes[2].kill()
    for service in SERVICES:
        if replicas_of(service) == REPLICAS:
            stack.kill(f"{service}-{REPLICAS}")
    enter_cohort(stack.redcap["url"], stack.redcap["project_id"], EVENT, second, duplicates=2)

    records = {p.record for p in cohort}
    deadline = time.monotonic() + 600
    while not records <= set(_allocated_in_redcap(stack)):
        missing = sorted(records - set(_allocated_in_redcap(stack)))
        assert time.monotonic() < deadline, f"not allocated: {missing}"
        time.sleep(1.0)
    unblinded = gateway.call("study_manager", "GET",
                             "/api/v1/randomization/v1/allocations/unblinded")
    mine = [a["record"] for a in unblinded if a["record"] in records]
    assert sorted(mine) == sorted(records)  # exactly once each
    redcap = _allocated_in_redcap(stack)
    for allocation in unblinded:
        if allocation["record"] in records:
            assert redcap[allocation["record"]][F.allocation_module] == allocation["module"]
    numbers = [redcap[r][F.allocation_number] for r in records]
    assert len(set(numbers)) == len(numbers)  # no slot handed out twice
    dead = asyncio.run(_stream_info(stack, DLQ_STREAM)).state.messages
    assert dead == 0, f"{dead} dead letters (see the services' bus.dead_lettered log lines)"
    with httpx.Client() as client:
        ready = client.get(f"{stack.url_of('gateway-1')}/readyz")
    assert ready.status_code == 200, ready.text  # still ready on two of three NATS nodes
    print(f"production mode: {len(records)} participants allocated exactly once "
          f"({REPLICAS} replicas per service, reports 1; 3 NATS nodes with NKey users and TLS; "
          "one node and one replica of each replicated service killed)")


# ── restoring randomization from a backup ──────────────────────────────────────────────


def _tailor(stack: ProductionStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`tailor …` as a Job would run it: randomization's settings and secrets, with the
    provisioner's seed (the only user allowed to read the stream directly)."""
    assert stack.cluster is not None
    env = {**stack.env, **stack.own_secrets("randomization", Path("/nonexistent")),
           "TAILOR_NATS_CREDS_FILE": str(stack.cluster.seed(PROVISIONER))}
    return subprocess.run([sys.executable, "-m", "tailor_cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _pg(tool: str, *args: str) -> None:
    binary = shutil.which(tool)
    assert binary, f"{tool} (PostgreSQL client tools) is needed"
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _unblinded(gateway: Gateway, record: str) -> dict[str, Any]:
    got = gateway.call("study_manager", "GET", f"/api/v1/randomization/v1/allocations/{record}")
    return {k: got[k] for k in ("allocation_number", "module", "arm", "cluster", "stratum",
                                "slot", "pilot", "allocated_at")}


def _wait_allocated(stack: ProductionStack, records: set[str]) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + 600
    while not records <= set(redcap := _allocated_in_redcap(stack)):
        assert time.monotonic() < deadline, f"not allocated: {sorted(records - set(redcap))}"
        time.sleep(1.0)
    return redcap


def _cohort(first: int, size: int, seed: int) -> list[Participant]:
    cohort = make_cohort(PROTOCOL, eligible=size, ineligible=0, unscorable=0, withdrawn=0,
                         seed=seed)
    for n, participant in enumerate(cohort):
        participant.record = str(first + n)
    return cohort


def test_randomization_restored_from_backup_loses_and_doubles_no_allocation(
        stack: ProductionStack, tmp_path: Path) -> None:
    """deploy/README.md, "Restoring randomization": stop it, restore its database, `tailor
    migrate`, `tailor restore reconcile`, start it. Every allocation made after the backup
    comes back with its number, module, arm, stratum and slot; later participants take the
    slots after them."""
    gateway = Gateway(stack.url_of("gateway-1"), issue_keys(stack.database_urls["gateway"],
                                                            ["statistician", "study_manager"]))
    lists = gateway.call("statistician", "GET", "/api/v1/randomization/v1/lists")
    if not any(lst["status"] == "sealed" for lst in lists):  # this test run alone
        listing = gateway.call("statistician", "POST", "/api/v1/randomization/v1/lists", json={})
        gateway.call("statistician", "POST",
                     f"/api/v1/randomization/v1/lists/{listing['id']}/seal")
    url = stack.database_urls["randomization"]
    role = url.rsplit("/", 1)[1]
    backup = tmp_path / "randomization.dump"
    _pg("pg_dump", "--format=custom", f"--file={backup}", url)

    after_backup, after_restore = _cohort(2001, 6, seed=31), _cohort(3001, 4, seed=37)
    enter_cohort(stack.redcap["url"], stack.redcap["project_id"], EVENT, after_backup,
                 duplicates=1)
    lost = {p.record for p in after_backup}
    _wait_allocated(stack, lost)
    listed = gateway.call("study_manager", "GET", "/api/v1/randomization/v1/allocations/unblinded")
    before = {a["record"]: _unblinded(gateway, a["record"]) for a in listed}
    assert lost <= set(before)

    for name in ("randomization-1", f"randomization-{REPLICAS}"):
        stack.kill(name)  # scaled to zero
    _pg("pg_restore", "--clean", "--if-exists", "--no-owner", f"--role={role}", "-d", url,
        str(backup))
    migrated = _tailor(stack, "migrate", "randomization")
    assert migrated.returncode == 0, migrated.stderr
    verified = _tailor(stack, "restore", "verify", "--json")
    assert verified.returncode == 1, verified.stdout + verified.stderr  # reconcile needed
    assert set(json.loads(verified.stdout.splitlines()[-1])["lost"]) == lost  # after log lines
    reconciled = _tailor(stack, "restore", "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    again = _tailor(stack, "restore", "verify")
    assert again.returncode == 0, again.stdout + again.stderr
    for name in ("randomization-1", f"randomization-{REPLICAS}"):
        stack.restart(name, timeout=120)

    enter_cohort(stack.redcap["url"], stack.redcap["project_id"], EVENT, after_restore,
                 duplicates=1)
    later = {p.record for p in after_restore}
    redcap = _wait_allocated(stack, later)
    listed = gateway.call("study_manager", "GET", "/api/v1/randomization/v1/allocations/unblinded")
    records = [a["record"] for a in listed]
    assert sorted(records) == sorted(set(before) | later)  # exactly once each
    after = {r: _unblinded(gateway, r) for r in records}
    assert {r: after[r] for r in before} == before  # same number, module, arm, slot
    slots = [(a["stratum"], a["slot"]["seq"]) for a in after.values() if a["slot"]]
    assert len(set(slots)) == len(slots)  # no slot handed out twice
    numbers = [a["allocation_number"] for a in after.values()]
    assert len(set(numbers)) == len(numbers)
    for record, allocation in after.items():
        assert redcap[record][F.allocation_number] == allocation["allocation_number"]
        assert redcap[record][F.allocation_module] == allocation["module"]
    # Every other consumer is clean. The gateway's audit witness does flag the restore: the
    # randomization audit entries written after the backup are gone and the restored
    # chain's later entries differ from the heads it had seen (and randomization could not
    # be reached while down). That is the witness doing its job; see deploy/README.md.
    dead = asyncio.run(_dead_letters_by_consumer(stack))
    assert set(dead) <= {"gateway-audit-heads"}, dead
    print(f"restore: {len(lost)} allocations made after the backup given back; "
          f"{len(later)} participants allocated after the restore; {len(records)} in all")
