"""A participant who must wait — no sealed list yet, or the stratum ran out — is parked in
the database (never dead-lettered) and allocated by the seal or extension itself."""

from __future__ import annotations

from sqlmodel import Session, select

from services.randomization.models import ParkedAllocation, SealedSlotRow
from tests.support.harness import RunningService, eventually, provisioner_bus

from .support import allocation_rows, cluster_assigned, publish, sealed_list

STAT = "statistician"


def _parked(svc: RunningService) -> list[str]:
    with Session(svc.kernel.engine) as session:
        return [r.record for r in session.exec(select(ParkedAllocation))]


def _free_in(svc: RunningService, list_id: str, stratum: str) -> int:
    ref = svc.deps.context.key.stratum_ref(list_id, stratum)
    with Session(svc.kernel.engine) as session:
        return len(session.exec(select(SealedSlotRow).where(
            SealedSlotRow.list_id == list_id, SealedSlotRow.stratum_ref == ref,
            SealedSlotRow.used_by == None)).all())  # noqa: E711


def _allocated(svc: RunningService) -> set[str]:
    return {r.record for r in allocation_rows(svc.kernel.engine)}


async def test_waiting_participants_are_parked_and_allocated_on_seal_and_extend(
        sqlite_svc: RunningService) -> None:
    svc, bus = sqlite_svc, sqlite_svc.kernel.bus
    await publish(bus, [cluster_assigned("EARLY", "DYS")])  # before any list exists
    await eventually(lambda: _parked(svc) == ["EARLY"])

    list_id = await sealed_list(svc, 12)
    assert "EARLY" in _allocated(svc) and _parked(svc) == []  # allocated by the seal itself

    free = _free_in(svc, list_id, "DYS")  # blinded readers see totals only: ask the DB
    records = [f"D{i:02d}" for i in range(free + 1)]  # one more than the stratum has left
    await publish(bus, (cluster_assigned(r, "DYS") for r in records))
    await eventually(lambda: len(_parked(svc)) == 1 and len(_allocated(svc)) == free + 1)
    [waiting] = _parked(svc)

    extended = await svc.client.post(f"/v1/lists/{list_id}/extend", headers=svc.as_role(STAT),
                                     json={"stratum": "DYS", "slots": 12})
    assert extended.status_code == 200, extended.text
    assert waiting in _allocated(svc) and _parked(svc) == []  # allocated by the extension

    probe = provisioner_bus(bus.url, "test-dlq-probe")  # a service may not read stream info
    await probe.connect(attempts=20)
    assert probe.js is not None
    dead = await probe.js.stream_info("TRIAL_DLQ")
    await probe.close()
    assert dead.state.messages == 0  # nobody waited in the dead-letter queue
    with Session(svc.kernel.engine) as session:
        from services.core.audit import AuditEntry
        actions = [e.action for e in session.exec(select(AuditEntry).where(
            AuditEntry.record == waiting))]
    assert "allocation.parked" in actions and "allocation.unparked" in actions
