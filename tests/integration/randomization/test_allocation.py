"""Allocation: cluster_assigned → next sealed slot → Allocated; exactly once, in list order,
under concurrency and with several replicas; pilot participants; the manual path."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.core import audit
from services.core.db import unit_of_work
from services.core.events import Allocated, ClusterAssigned, Envelope
from services.core.sealing import Keyring
from services.randomization.app import build_spec
from services.randomization.service import (
    Actor,
    AllocationRace,
    AllocationRequest,
    Context,
    allocate,
    disclose,
)
from tailor_cli.natsd import NatsServer
from tests.support.harness import RunningService, eventually, running_service

from .support import (
    Tap,
    allocation_rows,
    check_exactly_once_in_order,
    cluster_assigned,
    opened_slots,
    publish,
    sealed_list,
    sealed_list_direct,
)

CLUSTERS = ("DYS", "ID", "AC")
MANAGER = "study_manager"


async def test_cluster_assigned_events_are_allocated_in_list_order(svc: RunningService) -> None:
    list_id = await sealed_list(svc, 12)
    records = [f"R{i:02d}" for i in range(30)]
    cluster_of = {r: CLUSTERS[i % 3] for i, r in enumerate(records)}
    async with Tap(svc.kernel.bus, Allocated.subject) as tap:
        await publish(svc.kernel.bus, (cluster_assigned(r, cluster_of[r]) for r in records))
        events = await tap.read(at_least=30)
    assert len(events) == 30 and {e.record for e in events} == set(records)
    assert all(set(e.data) == {"record", "allocation_number", "module", "allocated_at"} for e in events)
    assert [e.data["allocation_number"] for e in events] == [f"PP-{n:04d}" for n in range(1, 31)]

    ctx = svc.deps.context
    by_stratum = check_exactly_once_in_order(svc.kernel.engine, ctx, list_id, records)
    slots = opened_slots(svc.kernel.engine, ctx.key, list_id)
    for stratum in CLUSTERS:
        published = [e.data["module"] for e in events if cluster_of[e.record] == stratum]
        assert published == [slots[(stratum, seq)][0].module for seq in range(1, 11)]
        assert by_stratum[stratum] == [r for r in records if cluster_of[r] == stratum]


async def test_duplicate_and_repeated_events_make_one_allocation(sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    await sealed_list(svc, 12)
    first = cluster_assigned("R1", "DYS")
    async with Tap(svc.kernel.bus, Allocated.subject) as tap:
        await publish(svc.kernel.bus, [first])
        await tap.read(at_least=1)
        # the same event again under another message id (the inbox catches it), and the
        # allocation service announcing the record once more (the service returns it as is)
        await publish(svc.kernel.bus, [first], msg_id="again")
        await publish(svc.kernel.bus, [cluster_assigned("R1", "DYS"), cluster_assigned("R1", "AC")])
        await publish(svc.kernel.bus, [cluster_assigned("R2", "ID")])  # a marker behind them
        events = await tap.read(at_least=2)
    assert sorted(e.record for e in events) == ["R1", "R2"]
    rows = allocation_rows(svc.kernel.engine)
    assert [r.record for r in rows] == ["R1", "R2"]
    ctx = svc.deps.context
    assert disclose(ctx, rows[0]).cluster == "DYS"  # the repeat with another cluster changed nothing


async def test_pilot_participant_gets_the_matching_module_without_a_slot(
        sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    await sealed_list(svc, 12)
    async with Tap(svc.kernel.bus, Allocated.subject) as tap:
        await publish(svc.kernel.bus, [cluster_assigned("QA1", "DYS", pilot=True)])
        [event] = await tap.read(at_least=1)
    matching = next(c.matching_module for c in svc.kernel.protocol.clusters if c.key == "DYS")
    assert event.data["module"] == matching
    view = (await svc.client.get("/v1/allocations/QA1", headers=svc.as_role(MANAGER))).json()
    assert view["pilot"] is True and view["slot"] is None
    assert view["arm"] == svc.kernel.protocol.randomization.arm_of.matching
    listed = (await svc.client.get("/v1/lists", headers=svc.as_role("statistician"))).json()[0]
    assert listed["used"] == 0  # a pilot participant takes no slot
    balance = (await svc.client.get("/v1/reports/balance", headers=svc.as_role(MANAGER))).json()
    assert all(s["allocated"] == 0 for s in balance["by_stratum"])
    assert all(m["allocated"] == 0 for m in balance["by_module"])


async def test_manual_allocation_has_the_same_guarantees(sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    body = {"record": "M1", "cluster": "ID", "reason": "REDCap is down"}
    headers = svc.as_role(MANAGER, "sm-1")
    early = await svc.client.post("/v1/allocations", json=body, headers=headers)
    assert early.status_code == 409 and early.json()["field"] == "list"
    await sealed_list(svc, 12)
    async with Tap(svc.kernel.bus, Allocated.subject) as tap:
        answers = await asyncio.gather(*(svc.client.post("/v1/allocations", json=body, headers=headers)
                                         for _ in range(8)))
        assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
        assert len({a.json()["allocation_number"] for a in answers}) == 1
        await publish(svc.kernel.bus, [cluster_assigned("M1", "ID")])  # the bus catches up later
        await publish(svc.kernel.bus, [cluster_assigned("M2", "ID")])
        events = await tap.read(at_least=2)
    assert [e.record for e in events] == ["M1", "M2"]
    created = answers[[a.status_code for a in answers].index(201)].json()
    assert created["slot"] == {"seq": 1, "batch": 1} and created["source"] == "manual"

    for bad, field in (({**body, "record": "M3", "reason": "  "}, "reason"),
                       ({"record": "M3", "cluster": "ID"}, "reason"),
                       ({**body, "record": "M3", "cluster": "XYZ"}, "cluster")):
        refused = await svc.client.post("/v1/allocations", json=bad, headers=headers)
        assert refused.status_code == 422 and field in _fields(refused.json()), refused.text
    assert (await svc.client.get("/v1/allocations/M3", headers=headers)).status_code == 404
    coordinator = await svc.client.post("/v1/allocations", json={**body, "record": "M3"},
                                        headers=svc.as_role("coordinator"))
    assert coordinator.status_code == 403
    with Session(svc.kernel.engine) as session:
        created_entries = session.exec(select(audit.AuditEntry).where(
            col(audit.AuditEntry.action) == "allocation.created")).all()
    assert [(e.record, e.reason) for e in created_entries] == [("M1", "REDCap is down"), ("M2", None)]


def _fields(problem: dict) -> set[str]:
    return {problem.get("field"), *(e["field"] for e in problem.get("errors", []))} - {None}


def _allocate_with_retry(engine: Engine, ctx: Context, record: str, cluster: str) -> str:
    request = AllocationRequest(record=record, cluster=cluster, site=None, pilot=False,
                                source="manual", actor=Actor("sm", MANAGER), reason="load")
    for _ in range(5):
        try:
            with unit_of_work(engine) as session:
                row, _created = allocate(session, ctx, request)
                return row.allocation_number
        except AllocationRace:  # the same record in another stratum's transaction: ask again
            continue
    raise AssertionError(f"{record} never allocated")


def test_200_concurrent_allocations_take_each_slot_once_in_order(migrated: Engine,
                                                                  context: Context) -> None:
    list_id = sealed_list_direct(migrated, context, 80)
    rng = random.Random(5)
    records = [f"C{i:03d}" for i in range(200)]
    cluster_of = {r: CLUSTERS[rng.randrange(3)] for r in records}
    jobs = records + rng.sample(records, 30)  # 30 participants asked for twice at once
    rng.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=16) as pool:
        numbers = list(pool.map(lambda r: (r, _allocate_with_retry(migrated, context, r, cluster_of[r])),
                                jobs))
    by_record: dict[str, set[str]] = {}
    for record, number in numbers:
        by_record.setdefault(record, set()).add(number)
    assert all(len(n) == 1 for n in by_record.values())  # duplicates got the same allocation
    check_exactly_once_in_order(migrated, context, list_id, records)
    numbers_taken = sorted(int(r.allocation_number.removeprefix("PP-")) for r in allocation_rows(migrated))
    assert numbers_taken == list(range(1, 201))  # no gap in allocation numbers either
    with unit_of_work(migrated) as session:
        assert audit.verify(session).ok


async def test_replicas_share_the_work_without_double_allocation(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    records = [f"X{i:02d}" for i in range(60)]
    async with (
        running_service(build_spec(), home=tmp_path, nats_url=nats_server.url,
                        database_url=database_url) as one,
        running_service(build_spec(), home=tmp_path, nats_url=nats_server.url,
                        database_url=database_url) as two,
    ):
        list_id = await sealed_list(one, 30)
        async with Tap(one.kernel.bus, Allocated.subject) as tap:
            await publish(two.kernel.bus, (cluster_assigned(r, CLUSTERS[i % 3])
                                           for i, r in enumerate(records)))
            events = await tap.read(at_least=60)
        assert sorted(e.record for e in events) == records
        await eventually(lambda: len(allocation_rows(one.kernel.engine)) == 60)
        check_exactly_once_in_order(one.kernel.engine, one.deps.context,
                                    list_id, records)


async def test_a_cluster_sealed_elsewhere_is_refused_and_a_pre_sealing_one_still_allocates(
        sqlite_svc: RunningService) -> None:
    """Only randomization's key opens a cluster; during an upgrade, a `cluster_assigned`
    published before sealing (cluster in clear) is still allocated, not lost."""
    svc = sqlite_svc
    await sealed_list(svc, 12)
    proper = cluster_assigned("S1", "ID")
    foreign = Keyring("randomization", X25519PrivateKey.generate()).recipient().seal_json(
        {"cluster": "ID", "probabilities": {}}, subject=ClusterAssigned.subject, record="S1")
    legacy = Envelope(subject=ClusterAssigned.subject, producer="allocation", record="S2",
                      data={"record": "S2", "cluster": "AC", "probabilities": {"AC": 0.8},
                            "model_version": "old", "low_confidence": False})
    async with Tap(svc.kernel.bus, Allocated.subject) as tap:
        await publish(svc.kernel.bus, [Envelope(subject=proper.subject, producer="allocation",
                                                record="S1",
                                                data={**proper.data, "sealed": foreign})])
        await publish(svc.kernel.bus, [legacy, cluster_assigned("S3", "DYS")])
        events = await tap.read(at_least=2)
    assert sorted(e.record for e in events) == ["S2", "S3"]  # S1's foreign seal is poison
    view = (await svc.client.get("/v1/allocations/S2", headers=svc.as_role(MANAGER))).json()
    assert view["cluster"] == "AC"
