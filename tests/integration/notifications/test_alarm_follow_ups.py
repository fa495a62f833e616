"""Facts published for a person reach one: each alarm event becomes a follow-up (a staff
task) once, e-mailed to the trial team, listed for coordinators, resolved with an audit
entry."""

from __future__ import annotations

from datetime import UTC, datetime

from services.core.events import (
    AllocationNeedsReview,
    BaselineNeedsReview,
    EmergencyUnblinded,
    Envelope,
    RedcapWriteFailed,
    StratumRunningLow,
    TimepointCompleted,
)
from tests.support.harness import eventually

from .conftest import Stack

AT = datetime(2025, 2, 1, 9, 0, tzinfo=UTC)


async def test_every_alarm_becomes_one_follow_up(stack: Stack) -> None:
    async with stack.start():
        staff = stack.svc.as_role("coordinator")
        review = await stack.publish(AllocationNeedsReview(
            record="P-200", reason="mpid_incomplete", field="mpid_12"), record="P-200")
        await stack.publish(AllocationNeedsReview(
            record="P-200", reason="mpid_incomplete"), record="P-200", event_id=review.id,
            msg_id="a-redelivered-copy")  # the same event again: no second task
        await stack.publish(BaselineNeedsReview(
            record="P-204", reason="scr_site: missing, or not a level of its stratification "
            "factor", field="scr_site", detail="scr_site must be one of 1, 2 (the sites)"),
            record="P-204")
        await stack.publish(EmergencyUnblinded(
            record="P-201", allocation_number="A-201", unblinded_by="dr.x", role="investigator",
            reason="SAE", at=AT), record="P-201")
        await stack.publish(StratumRunningLow(
            list_id="L1", strata_running_low=1, fewest_free_slots=2, threshold=5, at=AT),
            record="")
        await stack.publish(TimepointCompleted(
            record="P-202", timepoint="week_4", completed_at=AT, reminders_sent=2),
            record="P-202")
        failed = RedcapWriteFailed(write_id="w1", record="P-203", kind="allocation",
                                   error="field not found")
        env = Envelope(subject=failed.subject, producer="gateway", record="P-203",
                       data=failed.model_dump(mode="json"))
        await stack.bus.publish(env.subject, env.model_dump_json().encode(), msg_id=env.id)

        async def listed() -> list[dict[str, object]]:
            r = await stack.svc.client.get("/v1/follow-ups", headers=staff)
            return r.json()  # type: ignore[no-any-return]

        await eventually(lambda: _count(listed, 6))
        follow_ups = await listed()
        assert sorted(f["kind"] for f in follow_ups) == [
            "allocation_needs_review", "allocation_needs_review", "emergency_unblinded",
            "redcap_write_failed", "stratum_running_low", "timepoint_completed"]
        stratification = next(f for f in follow_ups if f["record"] == "P-204")
        assert "scr_site must be one of 1, 2" in str(stratification["summary"])
        # ... and each is e-mailed to the trial team (protocol trial.contacts), once.
        team = {"coordinator@perpain.example", "data@perpain.example"}
        await eventually(lambda: len(stack.sink.messages) == 6 * len(team))
        assert {r for m in stack.sink.messages for r in m.rcpt_tos} == team
        first = follow_ups[0]
        url = f"/v1/follow-ups/{first['id']}/resolve"
        refused = await stack.svc.client.post(url, json={"resolution": "resend"}, headers=staff)
        assert refused.status_code == 422 and "resolution" in refused.text
        done = await stack.svc.client.post(url, json={"resolution": "done", "note": "fixed"},
                                           headers=staff)
        assert done.status_code == 200 and done.json()["resolved_by"] == "tester"
        assert len(await listed()) == 5


async def _count(listed, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await listed()) == n
