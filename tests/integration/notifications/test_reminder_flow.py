"""An allocated participant's reminders go out on the right days over each channel and
stop when the timepoint's forms are complete, or the participant withdraws or opts out."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from services.notifications.dispatch import steps
from tests.support.harness import eventually

from .conftest import Stack

# week_4 of a participant allocated on Monday 6 January 2025 is due Monday 3 February;
# reminders at 10:00 Berlin (09:00 UTC) on days +3, +7, +10 and +14 (the letter at +21
# would fall after the window closes on 18 February, so it is not planned).
EMAIL_1 = datetime(2025, 2, 6, 9, 0, tzinfo=UTC)
EMAIL_2 = datetime(2025, 2, 10, 9, 0, tzinfo=UTC)
SMS_3 = datetime(2025, 2, 13, 9, 0, tzinfo=UTC)
PHONE_4 = datetime(2025, 2, 17, 9, 0, tzinfo=UTC)
SECOND = {"seconds": 1}


def week_4(schedule: dict) -> dict:
    return next(t for t in schedule["timepoints"] if t["timepoint"] == "week_4")


async def test_reminders_go_out_on_their_days_across_channels_and_stop_on_completion(
        stack: Stack) -> None:
    async with stack.start() as svc:
        await stack.save_contact("P-001")
        await stack.allocate("P-001")
        schedule = await stack.scheduled("P-001")
        assert [t["timepoint"] for t in schedule["timepoints"]] == ["week_4", "week_8", "t1", "t2"]
        assert "module" not in str(schedule).lower() and "PERT" not in str(schedule)
        tp = week_4(schedule)
        assert tp["due_on"] == "2025-02-03" and tp["status"] == "not_due"
        assert [(r["channel"], r["due_at"][:16]) for r in tp["reminders"]] == [
            ("email", "2025-02-06T09:00"), ("email", "2025-02-10T09:00"),
            ("sms", "2025-02-13T09:00"), ("phone", "2025-02-17T09:00")]
        keys = [r["attempt"] for r in tp["reminders"]]
        assert keys == [1, 2, 3, 4]

        # Nothing is due a minute before the first reminder; at its time it goes out.
        stack.move_to(datetime(2025, 2, 6, 8, 59, tzinfo=UTC))
        assert await asyncio.to_thread(steps.due, svc.kernel.engine, stack.rt, 100, ()) == []
        stack.move_to(EMAIL_1)
        await eventually(lambda: len(stack.sink.messages) == 1)
        # Recorded before the clock jumps days ahead: a claim still open then would be judged
        # a sender that died mid-send (its lease long expired).
        await eventually(lambda: _state_of(stack, "P-001", 1, "sent"))
        first = stack.sink.messages[0]
        assert first.rcpt_tos == ("P-001@participant.example",)
        assert "week-4 questionnaire" in first.subject
        # The participant's own REDCap survey link for week 4's survey, as REDCap gives it.
        link = await asyncio.to_thread(stack.survey_link, "P-001", "mpid_ps", "week_4_arm_1")
        assert link.startswith(stack.redcap.base_url) and link in first.text
        for term in ("PERT", "Pain Extinction", "personalized", "dysfunctional"):
            assert term.lower() not in (first.subject + first.text).lower()

        # Partial completion is progress, not completion: reminders continue.
        await stack.save("P-001", "week_4", "mpid_ps",
                         {"mpid_ps_complete": "2", "pgic_complete": "0"})
        await eventually(lambda: _status(stack, "P-001", "in_progress"))
        stack.move_to(EMAIL_2)
        await eventually(lambda: len(stack.sink.messages) == 2)
        await eventually(lambda: _state_of(stack, "P-001", 2, "sent"))

        stack.move_to(SMS_3)
        await eventually(lambda: len(stack.provider.messages) == 1)
        sms = next(iter(stack.provider.messages.values()))
        assert sms.to.startswith("+491511000") and "week-4 questionnaire" in sms.text
        await eventually(lambda: _state_of(stack, "P-001", 3, "delivered"))

        stack.move_to(PHONE_4)
        await eventually(lambda: _tasks(stack, 1))
        tasks = (await svc.client.get("/v1/tasks", headers=svc.as_role("coordinator"))).json()
        assert tasks[0]["channel"] == "phone" and tasks[0]["record"] == "P-001"
        assert sms.to in tasks[0]["call_script"]

        # Every form complete: the open phone task and what is still queued are cancelled.
        await stack.save("P-001", "week_4", "pgic",
                         {"mpid_ps_complete": "2", "pgic_complete": "2"})
        await eventually(lambda: _status(stack, "P-001", "complete"))
        await eventually(lambda: _tasks(stack, 0))
        states = {(m["timepoint"], m["attempt"]): m for m in await stack.messages("P-001")}
        assert states[("week_4", 4)]["state"] == "cancelled"
        assert states[("week_4", 4)]["cancel_reason"] == "timepoint_complete"
        assert all(states[("t1", a)]["state"] == "scheduled" for a in range(1, 6))
        # Two reminders reached the participant, none after completion (the trial team's
        # e-mail about the completed timepoint may already be in the sink too).
        assert len(stack.sink.messages_to("P-001@participant.example")) == 2

        # After the window: a responder, reached after three reminders.
        stack.move_to(datetime(2025, 2, 19, 9, tzinfo=UTC))
        report = (await svc.client.get("/v1/reports/retention",
                                       headers=svc.as_role("monitor"))).json()
        row = next(t for t in report["timepoints"] if t["timepoint"] == "week_4")
        assert (row["complete"], row["responded"], row["window_closed"]) == (1, 1, 1)
        assert row["reminders_needed"] == {"3": 1}
        assert row["response_rate"] == 1.0 and 0.20 < row["response_ci_low"] < 0.21
        email = next(c for c in report["channels"] if c["channel"] == "email")
        assert email["sent"] == 2
        exposed = (await svc.client.get("/metrics")).text
        for name in ("tailor_notifications_dispatched_total",
                     "tailor_notifications_dispatch_lag_seconds_bucket",
                     "tailor_notifications_backlog_messages",
                     "tailor_notifications_diary_adherence_ratio"):
            assert name in exposed
        assert "P-001" not in exposed  # no participant in any label


async def test_a_time_zone_learned_after_allocation_moves_queued_reminders(stack: Stack) -> None:
    async with stack.start():
        await stack.allocate("P-080")
        before = week_4(await stack.scheduled("P-080"))["reminders"]
        assert before[0]["due_at"].startswith("2025-02-06T09:00")  # 10:00 in the default zone
        await stack.save_contact("P-080", cons_timezone="America/Chicago")

        async def moved() -> bool:
            reminders = week_4(await stack.scheduled("P-080"))["reminders"]
            return reminders[0]["due_at"].startswith("2025-02-06T16:00")  # 10:00 in Chicago

        await eventually(moved)
        t1 = next(t for t in (await stack.scheduled("P-080"))["timepoints"]
                  if t["timepoint"] == "t1")
        assert t1["reminders"][0]["due_at"].startswith("2025-04-03T15:00")  # daylight time


async def test_withdrawal_and_opt_out_cancel_queued_reminders(stack: Stack) -> None:
    async with stack.start() as svc:
        for record in ("P-010", "P-011"):
            await stack.save_contact(record)
            await stack.allocate(record)
            await stack.scheduled(record)
        # Opting out of e-mail (by staff) cancels every queued e-mail, nothing else.
        r = await svc.client.post("/v1/participants/P-010/opt-out", json={"channel": "email"},
                                  headers=svc.as_role("coordinator"))
        assert r.status_code == 200 and r.json()["cancelled"] == 8  # 2 per timepoint
        msgs = await stack.messages("P-010")
        assert {m["state"] for m in msgs if m["channel"] == "email"} == {"cancelled"}
        assert {m["state"] for m in msgs if m["channel"] != "email"} == {"scheduled"}
        # Opting out on the consent form (SMS) works the same way.
        await stack.save_contact("P-010", cons_optout___sms="1")
        await eventually(lambda: _all_cancelled(stack, "P-010", "sms"))

        # The withdrawal form stops everything.
        await stack.save("P-011", "week_4", "withdrawal", {"wd_withdrawn": "1",
                                                           "withdrawal_complete": "2"})
        await eventually(lambda: _all_cancelled(stack, "P-011", None))
        schedule = await stack.scheduled("P-011")
        assert schedule["withdrawn_at"] is not None
        stack.move_to(EMAIL_2 .replace(hour=10))
        stack.move_to(SMS_3.replace(hour=10))
        await eventually(lambda: len(stack.provider.messages) == 0 and _all_done(stack))
        assert stack.sink.messages == []  # neither participant received anything
        assert stack.provider.messages == {}

        bad = await svc.client.post("/v1/participants/P-010/opt-out", json={"channel": "pigeon"},
                                    headers=svc.as_role("coordinator"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "channel"
        who = await svc.client.post("/v1/participants/P-999/opt-out", json={"channel": "sms"},
                                    headers=svc.as_role("coordinator"))
        assert who.status_code == 404 and who.json()["field"] == "record"


async def test_a_redelivered_allocation_sends_one_email(stack: Stack) -> None:
    async with stack.start():
        await stack.save_contact("P-020")
        env = await stack.allocate("P-020")
        # The same event again (as after a producer restart), and a replay under a new id.
        await stack.bus.publish(env.subject, env.model_dump_json().encode(), msg_id="again-1")
        await stack.allocate("P-020")
        await stack.scheduled("P-020")
        stack.move_to(EMAIL_1)
        await eventually(lambda: len(stack.sink.messages) == 1)
        stack.move_to(EMAIL_1.replace(hour=12))
        await eventually(lambda: _all_done(stack))
        assert len(stack.sink.messages_to("P-020@participant.example")) == 1
        msgs = await stack.messages("P-020")
        assert len([m for m in msgs if m["timepoint"] == "week_4"]) == 4


# ── helpers ──────────────────────────────────────────────────────────────────────
async def _status(stack: Stack, record: str, status: str) -> bool:
    return week_4(await stack.scheduled(record))["status"] == status


async def _state_of(stack: Stack, record: str, attempt: int, state: str) -> bool:
    msgs = await stack.messages(record)
    return any(m["timepoint"] == "week_4" and m["attempt"] == attempt and m["state"] == state
               for m in msgs)


async def _tasks(stack: Stack, n: int) -> bool:
    r = await stack.svc.client.get("/v1/tasks", headers=stack.svc.as_role("coordinator"))
    return len(r.json()) == n


async def _all_cancelled(stack: Stack, record: str, channel: str | None) -> bool:
    return all(m["state"] == "cancelled" for m in await stack.messages(record)
               if channel is None or m["channel"] == channel)


async def _all_done(stack: Stack) -> bool:
    """Nothing due is waiting for the dispatcher."""
    keys = await asyncio.to_thread(steps.due, stack.svc.kernel.engine, stack.rt, 100, ())
    return not keys
