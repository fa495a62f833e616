"""Blinding: blinded roles never see arm or cluster in a response, event, log line or metric;
the unblinded view; emergency unblinding of one participant."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlmodel import Session, col, select

from services.core import audit
from services.core.events import EmergencyUnblinded
from services.core.logging import configure_logging
from tests.support.harness import RunningService

from .support import Tap, cluster_assigned, publish, sealed_list

BLINDED_KEYS = {"record", "allocation_number", "module", "allocated_at"}


def _unblinding_words(svc: RunningService) -> set[str]:
    """Arm and cluster keys and labels: none may reach a blinded reader."""
    p = svc.kernel.protocol
    return {*(c.key for c in p.clusters), *(c.label for c in p.clusters), *(a.key for a in p.arms),
            p.randomization.arm_of.matching, p.randomization.arm_of.non_matching}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)
    elif value is not None:
        yield str(value)


def _leaks(value: Any, words: set[str]) -> list[str]:
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(words))) + r")\b")
    return [s for s in _strings(value) if pattern.search(s)]


async def _trial_with_allocations(svc: RunningService, tap: Tap) -> list[str]:
    await sealed_list(svc, 12)
    records = [f"B{i:02d}" for i in range(9)]
    await publish(svc.kernel.bus, [cluster_assigned(r, ("DYS", "ID", "AC")[i % 3])
                                   for i, r in enumerate(records)])
    await publish(svc.kernel.bus, [cluster_assigned("QA1", "ID", pilot=True)])
    manual = await svc.client.post("/v1/allocations", headers=svc.as_role("study_manager"),
                                   json={"record": "B99", "cluster": "AC", "reason": "bus down"})
    assert manual.status_code == 201
    await tap.read(at_least=11)
    return [*records, "QA1", "B99"]


@pytest.fixture
def service_logs() -> Iterator[io.StringIO]:
    """Every structlog line of the service, as JSON, at debug level."""
    buffer = io.StringIO()
    configure_logging("randomization", level="debug", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buffer))
    yield buffer
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))


async def test_blinded_roles_never_see_arm_or_cluster(sqlite_svc: RunningService,
                                                      service_logs: io.StringIO) -> None:
    svc = sqlite_svc
    words = _unblinding_words(svc)
    async with Tap(svc.kernel.bus, "trial.v1.randomization.>") as tap:
        records = await _trial_with_allocations(svc, tap)
        unblinding = await svc.client.post("/v1/allocations/B00/emergency-unblinding",
                                           headers=svc.as_role("study_manager"),
                                           json={"reason": "anaphylaxis, treating physician asks"})
        assert unblinding.status_code == 200
        events = await tap.read(at_least=12)

    assert {e.subject for e in events} >= {"trial.v1.randomization.allocated", EmergencyUnblinded.subject}
    assert _leaks([e.model_dump(mode="json") for e in events], words) == []

    for role in ("coordinator", "assessor"):
        for record in records:
            view = await svc.client.get(f"/v1/allocations/{record}", headers=svc.as_role(role))
            if role == "assessor":  # schedule and completion only, never the module
                assert view.status_code == 403
                continue
            assert view.status_code == 200 and set(view.json()) == BLINDED_KEYS
            assert _leaks(view.json(), words) == []
        for method, url in (("GET", "/v1/allocations/unblinded"), ("GET", "/v1/reports/balance"),
                            ("POST", "/v1/allocations/B01/emergency-unblinding"), ("GET", "/v1/audit")):
            refused = await svc.client.request(method, url, headers=svc.as_role(role),
                                               json={"reason": "curious"} if method == "POST" else None)
            assert refused.status_code == 403
    monitor = svc.as_role("monitor")
    for url in ("/v1/reports/balance", "/v1/lists", "/v1/audit?limit=1000", "/v1/audit/verify"):
        response = await svc.client.get(url, headers=monitor)
        assert response.status_code == 200 and _leaks(response.json(), words) == [], url
    assert set((await svc.client.get("/v1/reports/balance", headers=monitor)).json()) == {
        "list_id", "by_module"}
    assert (await svc.client.get("/v1/allocations/unblinded", headers=monitor)).status_code == 403

    metrics = (await svc.client.get("/metrics")).text
    assert "tailor_randomization_free_slots" in metrics
    samples = [line for line in metrics.splitlines() if line and not line.startswith("#")]
    assert _leaks([re.sub(r"\s[-+0-9.eE]+$", "", s) for s in samples], words) == []

    lines = [json.loads(line) for line in service_logs.getvalue().splitlines()]
    created = [x for x in lines if x.get("event") == "allocation.created"]
    assert {x["record"] for x in created} == set(records)  # the logs were captured
    assert _leaks(lines, words) == []


async def test_unblinded_and_blinded_views_differ_as_specified(sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    async with Tap(svc.kernel.bus, "trial.v1.randomization.allocated") as tap:
        await _trial_with_allocations(svc, tap)
    blinded = (await svc.client.get("/v1/allocations/B01", headers=svc.as_role("coordinator"))).json()
    for role in ("study_manager", "dsmb"):
        view = (await svc.client.get("/v1/allocations/B01", headers=svc.as_role(role, f"{role}-1"))).json()
        assert {k: view[k] for k in BLINDED_KEYS} == blinded
        assert view["cluster"] == view["stratum"] == "ID"
        assert view["arm"] in {a.key for a in svc.kernel.protocol.arms}
        assert view["slot"] == {"seq": 1, "batch": 1} and view["pilot"] is False
    listing = await svc.client.get("/v1/allocations/unblinded", headers=svc.as_role("dsmb", "dsmb-1"))
    assert listing.status_code == 200
    assert all(set(item) == {"record", "module", "arm", "cluster", "allocated_at", "pilot"}
               for item in listing.json())
    assert {i["record"]: i["pilot"] for i in listing.json()}["QA1"] is True
    balance = (await svc.client.get("/v1/reports/balance", headers=svc.as_role("study_manager"))).json()
    assert [s["stratum"] for s in balance["by_stratum"]] == ["AC", "DYS", "ID"]
    assert sum(s["allocated"] for s in balance["by_stratum"]) == 10  # the pilot participant apart
    assert sum(m["allocated"] for m in balance["by_module"]) == 10
    with Session(svc.kernel.engine) as session:
        reads = session.exec(select(audit.AuditEntry).where(col(audit.AuditEntry.action).in_(
            ["allocation.unblinded_read", "allocations.unblinded_listed"]))).all()
    assert sorted(e.actor for e in reads) == ["dsmb-1", "dsmb-1", "study_manager-1"]


async def test_emergency_unblinding_needs_a_reason_and_is_audited(sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    async with Tap(svc.kernel.bus, "trial.v1.randomization.allocated") as tap:
        await _trial_with_allocations(svc, tap)
    url = "/v1/allocations/B02/emergency-unblinding"
    manager = svc.as_role("study_manager", "sm-7")
    assert (await svc.client.post(url, headers=manager, json={})).status_code == 422
    assert (await svc.client.post(url, headers=manager, json={"reason": "   "})).status_code == 422
    dsmb = await svc.client.post(url, headers=svc.as_role("dsmb"), json={"reason": "why not"})
    assert dsmb.status_code == 403
    missing = await svc.client.post("/v1/allocations/NOPE/emergency-unblinding", headers=manager,
                                    json={"reason": "serious adverse event"})
    assert missing.status_code == 404
    async with Tap(svc.kernel.bus, EmergencyUnblinded.subject) as tap:
        done = await svc.client.post(url, headers=manager, json={"reason": "serious adverse event"})
        assert done.status_code == 200 and done.json()["cluster"] == "AC"
        [event] = await tap.read(at_least=1)
    assert event.data["record"] == "B02" and event.data["reason"] == "serious adverse event"
    assert event.data["unblinded_by"] == "sm-7" and "arm" not in event.data
    with Session(svc.kernel.engine) as session:
        [entry] = session.exec(select(audit.AuditEntry).where(
            col(audit.AuditEntry.action) == "allocation.emergency_unblinded")).all()
    assert (entry.record, entry.actor, entry.reason) == ("B02", "sm-7", "serious adverse event")
    assert _leaks(json.loads(entry.after), _unblinding_words(svc)) == []
