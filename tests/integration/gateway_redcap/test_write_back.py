"""`allocated` events are written into the REDCap record, once, audited; refusals dead-letter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redcap import Project
from sqlmodel import Session, select

from gateway.redcap.models import RedcapWrite
from services.core import audit
from services.core.events import Allocated, Envelope
from tests.support.harness import EventTap, eventually, provisioner_bus

from .conftest import Stack


async def _publish(stack: Stack, env: Envelope) -> None:
    bus = provisioner_bus(stack.nats_url, "test-publisher")
    await bus.connect(attempts=10)
    await bus.ensure_streams()
    await bus.publish(env.subject, env.model_dump_json().encode(), msg_id=f"{env.id}-{datetime.now()}")
    await bus.close()


def _allocated(record: str, module: str = "EDDT") -> Envelope:
    event = Allocated(record=record, allocation_number="P-0007", module=module,
                      allocated_at=datetime(2026, 11, 21, 9, 30, tzinfo=UTC))
    return Envelope(subject=Allocated.subject, producer="randomization", record=record,
                    correlation_id="corr-1", data=event.model_dump(mode="json"))


def _writes(stack: Stack) -> list[RedcapWrite]:
    with Session(stack.engine) as session:
        return list(session.exec(select(RedcapWrite)))


async def test_allocation_lands_in_the_redcap_record_once(stack: Stack) -> None:
    stack.redcap.save_form("consent", values={"cons_given": "1"}, record="2001",
                           event="t0_baseline_arm_1")
    env = _allocated("2001")
    await _publish(stack, env)
    await _publish(stack, env)  # redelivered / duplicated: same event id
    await eventually(lambda: [w.status for w in _writes(stack)] == ["written"])
    project = Project(stack.redcap.api_url, stack.redcap.token)
    [row] = project.export_records(records=["2001"], events=["t0_baseline_arm_1"],
                                   forms=["allocation"])
    assert (row["alloc_number"], row["alloc_module"]) == ("P-0007", "EDDT")
    assert row["alloc_time"] == "2026-11-21 09:30:00"
    assert row["allocation_complete"] == "2"
    with Session(stack.engine) as session:
        actions = [e.action for e in session.exec(select(audit.AuditEntry))]
        assert actions.count("redcap.written") == 1
        assert audit.verify(session).ok


async def test_transient_errors_are_retried(stack: Stack) -> None:
    stack.redcap.set_fault("error", status=503, remaining=3, contents=["record"])
    await _publish(stack, _allocated("2002"))
    await eventually(lambda: [w.status for w in _writes(stack)] == ["written"], timeout=30)
    assert _writes(stack)[0].attempts >= 2


async def test_a_refused_write_is_dead_lettered(stack: Stack) -> None:
    await _publish(stack, _allocated("2003", module="NOT_A_MODULE"))
    await eventually(lambda: [w.status for w in _writes(stack)] == ["failed"])
    async with EventTap(stack.nats_url, "trial.dlq.gateway-redcap-sync") as tap:
        [letter] = await tap.wait_for(1)
    assert letter.data["record"] == "2003"
    assert "alloc_module" in letter.data["error"]
    await asyncio.sleep(0)
