"""Dead letters through the gateway: ops list them with their reason and origin, and
replay one (audited); no other role may, and a report for a person is not replayable."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from services.core.audit import AuditEntry
from services.core.roles import Role
from tests.support.harness import provisioner_bus

from .support import Edge


async def _dead_letter(nats_url: str, subject: str, headers: dict[str, str], msg_id: str) -> None:
    bus = provisioner_bus(nats_url, "test-dlq")
    await bus.connect(attempts=20)
    await bus.publish(subject, b'{"id": "e1"}', msg_id, headers=headers)
    await bus.close()


def test_ops_list_and_replay_dead_letters_and_the_replay_is_audited(edge: Edge) -> None:
    asyncio.run(_dead_letter(edge.nats_url, "trial.dlq.test-consumer", {
        "Tailor-Dead-Letter-Reason": "terminated", "Tailor-Error": "ContractViolation: x",
        "Tailor-Original-Subject": "trial.v1.redcap.form_saved_for_safety", "Tailor-Deliveries": "1",
        "Tailor-Consumer": "test-consumer"}, "ops-dl-1"))
    asyncio.run(_dead_letter(edge.nats_url, "trial.dlq.safety-allocated", {
        "Tailor-Dead-Letter-Reason": "terminated", "Tailor-Original-Subject":
        "trial.v1.randomization.allocated", "Tailor-Consumer": "safety-allocated"}, "ops-dl-3"))
    asyncio.run(_dead_letter(edge.nats_url, "trial.dlq.gateway-redcap-sync", {}, "ops-dl-2"))

    assert edge.call("GET", "/api/v1/ops/dead-letters", Role.COORDINATOR).status_code == 403
    listed = edge.call("GET", "/api/v1/ops/dead-letters", Role.OPS)
    assert listed.status_code == 200, listed.text
    mine = next(d for d in listed.json() if d["consumer"] == "test-consumer")
    report = next(d for d in listed.json() if d["consumer"] == "gateway-redcap-sync")
    assert mine["error"] == "ContractViolation: x" and mine["reason"] == "terminated"

    url = f"/api/v1/ops/dead-letters/{mine['seq']}/replay"
    assert edge.call("POST", url, Role.STUDY_MANAGER).status_code == 403
    replayed = edge.call("POST", url, Role.OPS)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["original_subject"] == "trial.v1.redcap.form_saved_for_safety"
    others = next(d for d in edge.call("GET", "/api/v1/ops/dead-letters", Role.OPS).json()
                  if d["consumer"] == "safety-allocated")
    forged = edge.call("POST", f"/api/v1/ops/dead-letters/{others['seq']}/replay", Role.OPS)
    assert forged.status_code == 409 and "provisioner" in forged.json()["detail"]
    not_an_event = edge.call("POST", f"/api/v1/ops/dead-letters/{report['seq']}/replay", Role.OPS)
    assert not_an_event.status_code == 409 and not_an_event.json()["field"] == "seq"
    assert edge.call("POST", "/api/v1/ops/dead-letters/999999/replay", Role.OPS).status_code == 404
    with edge.session() as session:
        entries = session.exec(select(AuditEntry).where(
            AuditEntry.action == "dead_letter.replayed")).all()
    assert [e.entity_id for e in entries] == [str(mine["seq"])]
