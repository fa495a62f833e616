"""The DET endpoint is rate-limited (wrong secrets per sender, right ones overall), and an
identical DET while the first is still waiting to be fetched is a no-op: nothing stored,
nothing appended to the audit chain."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, func, select

from gateway.app import SPEC as GATEWAY
from gateway.redcap.models import RedcapTrigger
from services.core import audit
from tailor_cli.natsd import NatsServer
from tests.support.harness import RunningService, running_service

SECRET = "s3cr3t-for-limits"
FORM = {"project_id": "101", "record": "17", "instrument": "consent",
        "redcap_event_name": "t0_baseline_arm_1", "consent_complete": "2"}


@pytest.fixture
async def gateway(tmp_path: Path, nats_server: NatsServer,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningService]:
    monkeypatch.setenv("TAILOR_REDCAP_DET_SECRET", SECRET)
    monkeypatch.delenv("TAILOR_REDCAP_API_URL", raising=False)  # no fetching: triggers wait
    monkeypatch.setenv("TAILOR_REDCAP_DET_BURST", "4")
    monkeypatch.setenv("TAILOR_REDCAP_DET_RATE_PER_SECOND", "0.001")
    monkeypatch.setenv("TAILOR_REDCAP_DET_REFUSED_BURST", "3")
    monkeypatch.setenv("TAILOR_REDCAP_DET_REFUSED_PER_SECOND", "0.001")
    async with running_service(GATEWAY, home=tmp_path, nats_url=nats_server.url,
                               database_url=f"sqlite:///{tmp_path}/gw.db") as gw:
        yield gw


def _count(gw: RunningService, what: object) -> int:
    with Session(gw.kernel.engine) as session:
        return session.exec(what).one()  # type: ignore[call-overload,no-any-return]


async def test_an_identical_det_while_the_first_waits_is_a_no_op(gateway: RunningService) -> None:
    first = await gateway.client.post("/redcap/det", params={"secret": SECRET}, data=FORM)
    assert first.status_code == 200 and first.json()["status"] == "stored"
    received = select(func.count()).select_from(audit.AuditEntry).where(
        col(audit.AuditEntry.action) == "redcap.det_received")
    for _ in range(2):
        again = await gateway.client.post("/redcap/det", params={"secret": SECRET}, data=FORM)
        assert again.status_code == 200
        assert again.json() == {"status": "already_pending", "trigger": first.json()["trigger"]}
    assert _count(gateway, select(func.count()).select_from(RedcapTrigger)) == 1
    assert _count(gateway, received) == 1
    other = await gateway.client.post("/redcap/det", params={"secret": SECRET},
                                      data={**FORM, "record": "18"})
    assert other.json()["status"] == "stored"  # another participant's form is its own trigger


async def test_dets_are_rate_limited(gateway: RunningService) -> None:
    wrong = [(await gateway.client.post("/redcap/det", params={"secret": "guess"}, data=FORM))
             .status_code for _ in range(5)]
    assert wrong == [403, 403, 403, 429, 429]
    right = [(await gateway.client.post("/redcap/det", params={"secret": SECRET},
                                        data={**FORM, "record": str(100 + i)})).status_code
             for i in range(6)]
    assert right == [200, 200, 200, 200, 429, 429]
    limited = await gateway.client.post("/redcap/det", params={"secret": SECRET}, data=FORM)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
