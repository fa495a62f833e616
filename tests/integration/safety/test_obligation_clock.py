"""Obligations: who acknowledged and sent them and when; escalation and the overdue metric
under a frozen clock driven by the service's own background watch."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from services.core.events import SafetyObligationEscalated
from tests.support.harness import RunningService, eventually

from .safety_support import (
    AWARE,
    BusProbe,
    FrozenClock,
    assert_audit_verified_and_blind,
    audit_entries,
    metric,
    sae_body,
)

OLDEST = "tailor_safety_oldest_open_obligation_timestamp_seconds"


async def _obligations(safety: RunningService, **params: str) -> dict[str, dict]:
    response = await safety.client.get("/v1/obligations", params=params,
                                       headers=safety.as_role("safety_officer"))
    assert response.status_code == 200, response.text
    return {o["rule_key"]: o for o in response.json()}


async def _metrics(safety: RunningService) -> str:
    return (await safety.client.get("/metrics")).text


async def test_acknowledge_and_sent_record_who_and_when(safety: RunningService,
                                                        clock: FrozenClock) -> None:
    await safety.client.post("/v1/adverse-events", json=sae_body(),
                             headers=safety.as_role("coordinator"))
    sponsor = (await _obligations(safety))["sae_to_sponsor"]
    url = f"/v1/obligations/{sponsor['id']}"
    a, b = (safety.as_role("safety_officer", subject=s) for s in ("dr-a", "dr-b"))

    assert (await safety.client.post(f"{url}/acknowledge", headers=safety.as_role("coordinator"))
            ).status_code == 403
    acked = await safety.client.post(f"{url}/acknowledge", json={"note": "on it"}, headers=a)
    assert acked.status_code == 200, acked.text
    assert acked.json()["acknowledged_by"] == "dr-a"
    assert datetime.fromisoformat(acked.json()["acknowledged_at"]) == clock.at
    assert acked.json()["status"] == "acknowledged"
    again = await safety.client.post(f"{url}/acknowledge", headers=b)
    assert again.status_code == 409 and "dr-a" in again.json()["detail"]

    too_early = await safety.client.post(
        f"{url}/sent", json={"sent_at": (AWARE - timedelta(hours=1)).isoformat()}, headers=b)
    assert too_early.status_code == 422 and too_early.json()["field"] == "sent_at"
    future = await safety.client.post(
        f"{url}/sent", json={"sent_at": (clock.at + timedelta(hours=1)).isoformat()}, headers=b)
    assert future.status_code == 422 and future.json()["field"] == "sent_at"
    naive = await safety.client.post(f"{url}/sent", json={"sent_at": "2025-03-10T11:00:00"},
                                     headers=b)
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "sent_at"

    sent_at = clock.at - timedelta(minutes=30)
    sent = await safety.client.post(f"{url}/sent", json={"sent_at": sent_at.isoformat(),
                                                         "note": "sponsor ref 42"}, headers=b)
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert (body["sent_by"], body["status"], body["sent_late"]) == ("dr-b", "sent", False)
    assert datetime.fromisoformat(body["sent_at"]) == sent_at
    assert (await safety.client.post(f"{url}/sent", headers=a)).status_code == 409
    assert (await safety.client.post("/v1/obligations/ob-nope/sent", headers=a)).status_code == 404

    actions = assert_audit_verified_and_blind(safety)
    assert actions.count("obligation.acknowledged") == 1 and actions.count("obligation.sent") == 1
    [sent_entry] = [e for e in audit_entries(safety) if e.action == "obligation.sent"]
    assert (sent_entry.actor, sent_entry.role, sent_entry.reason) == (
        "dr-b", "safety_officer", "sponsor ref 42")


async def test_escalation_at_half_time_once_and_overdue_metric(
        safety: RunningService, clock: FrozenClock, probe: BusProbe) -> None:
    clock.at = AWARE + timedelta(hours=1)
    await safety.client.post("/v1/adverse-events", json=sae_body(),
                             headers=safety.as_role("coordinator"))
    sponsor_deadline = AWARE + timedelta(hours=24)

    async def oldest() -> float | None:
        return metric(await _metrics(safety), OLDEST)

    await eventually(lambda: _is(oldest(), sponsor_deadline.timestamp()))
    assert (await _obligations(safety))["sae_to_sponsor"]["escalated_at"] is None

    clock.at = AWARE + timedelta(hours=12)  # half of 24 h: escalation falls due
    await eventually(_escalated(safety, "sae_to_sponsor"))
    await eventually(_tally(safety, "open", 2))  # a few more sweeps run at the same instant
    obligations = await _obligations(safety)
    assert datetime.fromisoformat(obligations["sae_to_sponsor"]["escalated_at"]) == clock.at
    assert obligations["susar_to_ethics"]["escalated_at"] is None  # 15 days: not yet half
    escalations = await probe.published(SafetyObligationEscalated.subject)
    assert [e.data["rule"] for e in escalations] == ["sae_to_sponsor"]
    assert escalations[0].data["recipients"] == ["sponsor", "principal_investigator"]

    clock.at = sponsor_deadline + timedelta(seconds=1)
    await eventually(_tally(safety, "overdue", 1))
    assert (await _obligations(safety, status="overdue"))["sae_to_sponsor"]["overdue_at"]
    assert clock.at.timestamp() > await oldest()  # what the alert compares

    sponsor_id = (await _obligations(safety))["sae_to_sponsor"]["id"]
    late = await safety.client.post(f"/v1/obligations/{sponsor_id}/sent",
                                    headers=safety.as_role("safety_officer"))
    assert late.json()["sent_late"] is True
    ethics_deadline = AWARE + timedelta(days=15)
    await eventually(lambda: _is(oldest(), ethics_deadline.timestamp()))
    ethics_id = (await _obligations(safety))["susar_to_ethics"]["id"]
    await safety.client.post(f"/v1/obligations/{ethics_id}/sent",
                             headers=safety.as_role("safety_officer"))
    await eventually(lambda: _is(oldest(), math.nan))
    assert [e.data["rule"] for e in await probe.published(SafetyObligationEscalated.subject)] \
        == ["sae_to_sponsor"]
    actions = assert_audit_verified_and_blind(safety)
    assert actions.count("obligation.escalated") == 1 and actions.count("obligation.overdue") == 1


async def _is(value, expected: float) -> bool:  # type: ignore[no-untyped-def]
    got = await value
    return got is not None and (got == expected or (math.isnan(expected) and math.isnan(got)))


def _escalated(safety: RunningService, rule: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await _obligations(safety))[rule]["escalated_at"] is not None
    return check


def _tally(safety: RunningService, status: str, n: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return metric(await _metrics(safety), "tailor_safety_obligations", status=status) == n
    return check
