"""Diary adherence, from the notifications service to the reports service over a real
nats-server: prompts that went out and were answered (or not) in notifications become the
reports' acceptability figure, counts only on the bus and pooled for blinded readers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from services.core.events import DiaryPromptsCounted
from services.core.protocol import TrialProtocol
from services.reports.app import SPEC as REPORTS
from tests.support.harness import EventTap, RunningService, eventually, running_service

from .conftest import Stack

GONE = ("sent", "delivered", "undelivered", "unknown")  # prompts that left notifications


def _with_answers(protocol: TrialProtocol) -> TrialProtocol:
    """A protocol whose diary answers come back through a REDCap instrument."""
    return protocol.model_copy(update={
        "diary": protocol.diary.model_copy(update={"answer_form": "diary_entry"})})


@asynccontextmanager
async def _reports(stack: Stack) -> AsyncIterator[RunningService]:
    async with running_service(REPORTS, home=stack.tmp, nats_url=stack.nats.url,
                               database_url=f"sqlite:///{stack.tmp / 'reports.db'}",
                               overrides={"clock": stack.clock}) as svc:
        svc.kernel.protocol = _with_answers(svc.kernel.protocol)
        yield svc


def _at(m: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(m["due_at"])


async def _prompts(stack: Stack, record: str) -> list[dict[str, Any]]:
    return [m for m in await stack.messages(record) if m["kind"] == "diary_prompt"]


async def _settled(stack: Stack, record: str, until: datetime) -> bool:
    return all(m["state"] != "scheduled" for m in await _prompts(stack, record) if _at(m) <= until)


async def _acceptability(reports: RunningService, role: str = "monitor") -> dict[str, Any]:
    r = await reports.client.get("/v1/acceptability", headers=reports.as_role(role))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_answered_and_unanswered_prompts_become_the_reports_diary_adherence(
        stack: Stack) -> None:
    async with stack.start() as notifications, _reports(stack) as reports, \
            EventTap(stack.nats.url, DiaryPromptsCounted.subject) as tap:
        notifications.kernel.protocol = _with_answers(notifications.kernel.protocol)
        await stack.save_contact("P-070")
        await stack.allocate("P-070", module="EMDI")
        await stack.scheduled("P-070")
        first = sorted(await _prompts(stack, "P-070"), key=_at)
        assert len(first) == 10

        # Two prompts go out; the first is answered while open, the second never is.
        answered, ignored = first[3], first[6]
        stack.move_to(_at(answered) + timedelta(minutes=5))
        await eventually(lambda: _settled(stack, "P-070", _at(answered)))
        await stack.save("P-070", "t0_baseline", "diary_entry", {"diary_entry_complete": "2"})

        async def was_answered() -> bool:
            return any(m["key"] == answered["key"] and m["answered_at"]
                       for m in await _prompts(stack, "P-070"))
        await eventually(was_answered)
        stack.move_to(_at(ignored) + timedelta(minutes=5))
        await eventually(lambda: _settled(stack, "P-070", _at(ignored)))
        stack.move_to(_at(ignored) + timedelta(minutes=70))  # it expired unanswered

        prompts = await _prompts(stack, "P-070")
        sent = [m for m in prompts if m["state"] in GONE]
        done = [m for m in sent if m["answered_at"]]
        assert len(done) == 1 and len(sent) >= 2  # the setting: answered and unanswered

        async def reported() -> bool:
            pooled = (await _acceptability(reports))["pooled"]["diary"]
            return (pooled["prompts_sent"], pooled["answered_in_time"]) == (len(sent), len(done))
        await eventually(reported)
        body = await _acceptability(reports)
        assert body["diary_adherence"] == len(done) / len(sent)
        diary = body["pooled"]["diary"]
        assert diary["participants"] == 1 and diary["adherence"] == len(done) / len(sent)
        week = datetime.fromisoformat(answered["due_at"]).isocalendar()
        assert [(w["week"], w["prompts_sent"], w["answered_in_time"]) for w in diary["weeks"]] == [
            (f"{week[0]}-W{week[1]:02d}", len(sent), len(done))]
        assert body["by_arm"] is None  # a blinded reader: pooled only
        csv = (await reports.client.get("/v1/acceptability", headers=reports.as_role("monitor"),
                                        params={"format": "csv"})).text
        assert f"all,diary_adherence,{len(done)},1,,,{len(sent)},{len(done) / len(sent)}" in csv

        # On the bus: counts, the record and the week; never the module or a time.
        events = await tap.wait_for(len(sent) + len(done))
        assert sum(e.data["prompts_sent"] for e in events) == len(sent)
        assert sum(e.data["answered_in_time"] for e in events) == len(done)
        for e in events:
            assert set(e.data) == {"record", "week", "prompts_sent", "answered_in_time"}
            assert "EMDI" not in e.model_dump_json() and "Diary" not in e.model_dump_json()
