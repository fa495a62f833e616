"""Stops, crashes and replicas never send a reminder twice, and lose none that can be
proven unsent.

Semantics under test (see services/notifications/dispatch/steps.py):
- graceful stop (SIGTERM, lifespan exit): in-flight sends finish and are recorded;
- crash after the claim: the claim's lease runs out; an SMS is sent again under the same
  Idempotency-Key (the provider sends it once); an e-mail becomes `unknown`, is
  dead-lettered for a person to check and is not sent again (SMTP cannot deduplicate);
- two replicas: the compare-and-set claim lets exactly one of them send.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.notifications.dispatch import steps
from services.notifications.dispatch.channels import SmsChannel
from tests.support.harness import eventually

from .conftest import BACKENDS, Stack, dlq_messages

SMS_3 = datetime(2025, 2, 13, 9, 0, tzinfo=UTC)  # e-mails 1 and 2 and the SMS are all due
EMAIL_1 = datetime(2025, 2, 6, 9, 0, tzinfo=UTC)


class Crash(BaseException):
    """The process dies here: nothing after this line runs, nothing is recorded."""


class CrashBeforeRecording:
    """Patches the dispatcher so the process 'dies' right after a send, before recording it:
    that step raises, and so does every later claim (a dead process claims nothing)."""

    def __init__(self, mp: pytest.MonkeyPatch) -> None:
        self.crashed = False
        claim = steps.claim

        def record_sent(*_args: object) -> None:
            self.crashed = True
            raise Crash

        def claim_unless_dead(*args: object) -> object:
            if self.crashed:
                raise Crash
            return claim(*args)  # type: ignore[arg-type]

        mp.setattr(steps, "record_sent", record_sent)
        mp.setattr(steps, "claim", claim_unless_dead)


async def _states(stack: Stack, record: str) -> dict[int, str]:
    return {m["attempt"]: m["state"] for m in await stack.messages(record)
            if m["timepoint"] == "week_4"}


async def _dispatcher_died(stack: Stack) -> bool:
    tasks = stack.svc.kernel.tasks
    return any(t.get_name() == "dispatcher" and t.done() for t in tasks)


async def test_crash_after_an_email_went_out_never_sends_it_again_and_loses_nothing(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_NOTIFICATIONS_DISPATCH_CONCURRENCY", "1")  # one send at a time
    with pytest.MonkeyPatch.context() as mp:
        async with stack.start():
            await stack.save_contact("P-050")
            await stack.allocate("P-050")
            await stack.scheduled("P-050")
            CrashBeforeRecording(mp)
            stack.move_to(SMS_3)  # e-mails 1 and 2 and the SMS are all due
            await eventually(lambda: _dispatcher_died(stack))
            assert len(stack.sink.messages) == 1  # the first e-mail went out, then the crash
            assert (await _states(stack, "P-050"))[1] == "claimed"

    stack.move_to(SMS_3 + timedelta(minutes=5))  # the claim's lease (60 s) has run out
    async with stack.start():
        async def settled() -> bool:
            s = await _states(stack, "P-050")
            return s[1] == "unknown" and s[2] == "sent" and s[3] == "delivered"

        await eventually(settled)
        assert len(stack.sink.messages) == 2  # e-mail 1 once, e-mail 2 once
        assert len(stack.provider.messages) == 1
        assert len([m for m in await dlq_messages(stack.bus) if b'"unknown_outcome"' in m]) == 1
        # The next reminder (the phone call) still comes.
        stack.move_to(datetime(2025, 2, 17, 9, 1, tzinfo=UTC))
        await eventually(lambda: _state_is(stack, "P-050", 4, "claimed"))
        staff = stack.svc.as_role("coordinator")
        tasks = (await stack.svc.client.get("/v1/tasks", headers=staff))
        assert [t["channel"] for t in tasks.json()] == ["phone"]
        # A person is asked to check the unknown e-mail, and can have it sent again.
        [follow_up] = (await stack.svc.client.get("/v1/follow-ups", headers=staff)).json()
        assert follow_up["kind"] == "unknown_email" and follow_up["record"] == "P-050"
        url = f"/v1/follow-ups/{follow_up['id']}/resolve"
        refused = await stack.svc.client.post(url, json={"resolution": "done"}, headers=staff)
        assert refused.status_code == 422 and "resolution" in refused.text
        done = await stack.svc.client.post(url, json={"resolution": "resend"}, headers=staff)
        assert done.status_code == 200 and done.json()["state"] == "done"
        await eventually(lambda: _state_is(stack, "P-050", 1, "sent"))
        assert len(stack.sink.messages) == 3
        again = await stack.svc.client.post(url, json={"resolution": "resend"}, headers=staff)
        assert again.status_code == 409


async def test_crash_after_an_sms_went_out_resends_it_under_the_same_key(stack: Stack) -> None:
    stack.provider.config.callback_url = None  # no callback tells the service before the restart
    with pytest.MonkeyPatch.context() as mp:
        async with stack.start():
            await stack.save_contact("P-053", cons_optout___email="1")
            await stack.allocate("P-053")
            await stack.scheduled("P-053")
            CrashBeforeRecording(mp)
            stack.move_to(SMS_3)
            await eventually(lambda: _dispatcher_died(stack))
            assert len(stack.provider.messages) == 1
            assert (await _states(stack, "P-053"))[3] == "claimed"

    stack.move_to(SMS_3 + timedelta(minutes=5))
    async with stack.start():
        await eventually(lambda: _state_is(stack, "P-053", 3, "sent"))
        [sms] = stack.provider.messages.values()  # the provider saw the key again: one SMS
        assert sms.reference == next(m["key"] for m in await stack.messages("P-053")
                                     if m["attempt"] == 3 and m["timepoint"] == "week_4")


async def test_crash_after_the_claim_before_the_send_resends_the_sms_once(
        stack: Stack) -> None:
    with pytest.MonkeyPatch.context() as mp:
        async with stack.start():
            await stack.save_contact("P-051", cons_optout___email="1")
            await stack.allocate("P-051")
            await stack.scheduled("P-051")
            mp.setattr(SmsChannel, "send", _crash_async)
            stack.move_to(SMS_3)
            await eventually(lambda: _state_is(stack, "P-051", 3, "claimed"))
            await eventually(lambda: _dispatcher_died(stack))
    assert stack.provider.messages == {}

    stack.move_to(SMS_3 + timedelta(minutes=5))
    async with stack.start():
        await eventually(lambda: _state_is(stack, "P-051", 3, "delivered"))
        assert len(stack.provider.messages) == 1


async def _crash_async(*_args: object, **_kwargs: object) -> None:
    raise Crash


async def test_graceful_stop_lets_the_send_in_flight_finish(stack: Stack) -> None:
    release = asyncio.Event()
    original = stack.sink.handle_DATA

    async def slow_data(server, session, envelope):  # type: ignore[no-untyped-def]
        await release.wait()
        return await original(server, session, envelope)

    stack.sink.handle_DATA = slow_data  # type: ignore[method-assign]
    async with stack.start():
        await stack.save_contact("P-052")
        await stack.allocate("P-052")
        await stack.scheduled("P-052")
        stack.move_to(EMAIL_1)
        await eventually(lambda: _state_is(stack, "P-052", 1, "claimed"))
        asyncio.get_running_loop().call_later(0.3, release.set)
    # The lifespan waited for the send: it is recorded, and a restart sends nothing.
    assert len(stack.sink.messages) == 1
    async with stack.start():
        assert (await _states(stack, "P-052"))[1] == "sent"
        stack.move_to(EMAIL_1 + timedelta(minutes=10))
        await eventually(lambda: _nothing_due(stack))
    assert len(stack.sink.messages) == 1


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
async def test_two_replicas_never_send_the_same_reminder_twice(stack: Stack) -> None:
    records = [f"P-{i:03d}" for i in range(100, 112)]
    async with stack.start(), stack.start():
        for record in records:
            await stack.save_contact(record)
            await stack.allocate(record)
        for record in records:
            await stack.scheduled(record)
        stack.move_to(EMAIL_1)
        await eventually(lambda: len(stack.sink.messages) >= len(records))
        # Every send recorded before the clock jumps past the leases (see the reminder flow).
        await eventually(lambda: _first_emails_sent(stack, records))
        stack.move_to(EMAIL_1 + timedelta(minutes=10))
        await eventually(lambda: _nothing_due(stack))
        recipients = sorted(r for m in stack.sink.messages for r in m.rcpt_tos)
        assert recipients == sorted(f"{r}@participant.example" for r in records)
        senders = {m["state"] for r in records for m in await stack.messages(r)
                   if m["attempt"] == 1 and m["timepoint"] == "week_4"}
        assert senders == {"sent"}


async def _first_emails_sent(stack: Stack, records: list[str]) -> bool:
    states = [(await _states(stack, r)).get(1) for r in records]
    return states == ["sent"] * len(records)


async def _state_is(stack: Stack, record: str, attempt: int, state: str) -> bool:
    return (await _states(stack, record)).get(attempt) == state


async def _nothing_due(stack: Stack) -> bool:
    keys = await asyncio.to_thread(steps.due, stack.svc.kernel.engine, stack.rt, 100, ())
    return not keys
