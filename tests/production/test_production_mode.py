"""Production mode on this machine: a cohort entered through the REDCap emulator reaches
two replicas of every service (reports: one) on their own PostgreSQL databases over a
3-node NATS cluster with NKey users, TLS and provisioned streams; one NATS node and one
replica of each replicated service are killed mid-cohort; every participant is allocated
exactly once and nothing is lost."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from nats.js.api import StreamInfo

from services.core.bus import DLQ_STREAM, STREAM, Bus
from services.core.bus_contract import PROVISIONER
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
COHORT = int(os.environ.get("TAILOR_TEST_PRODUCTION_COHORT", "40"))


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
