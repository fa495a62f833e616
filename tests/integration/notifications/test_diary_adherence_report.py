"""Diary adherence, from a participant's answer in REDCap to the reports service over a
real nats-server: prompts that went out and were answered in the REDCap diary survey (or
not, or too late) become the reports' acceptability figure, counts only on the bus and
pooled for blinded readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import redcap

from services.core.events import DiaryPromptsCounted
from services.reports.app import SPEC as REPORTS
from tests.support.harness import EventTap, RunningService, eventually, running_service

from .conftest import Stack, contact_fields, prompt_instance

GONE = ("sent", "delivered", "undelivered", "unknown")  # prompts that left notifications


@asynccontextmanager
async def _reports(stack: Stack) -> AsyncIterator[RunningService]:
    async with running_service(REPORTS, home=stack.tmp, nats_url=stack.nats.url,
                               database_url=f"sqlite:///{stack.tmp / 'reports.db'}",
                               overrides={"clock": stack.clock}) as svc:
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


def _link_in(text: str, redcap_url: str) -> str:
    return next(w for w in text.split() if w.startswith(f"{redcap_url}/surveys/?s="))


def _texts_to(stack: Stack, record: str) -> list[str]:
    mobile = contact_fields(record)["cons_mobile"].replace(" ", "")
    return [m.text for m in stack.provider.messages.values() if m.to.replace(" ", "") == mobile]


def _answer(link: str) -> int:
    """The participant opens the link of the SMS and submits the diary page."""
    httpx.get(link, timeout=30).raise_for_status()
    return httpx.post(link, data={"diary_pain_free": "1", "diary_mood": "5",
                                  "diary_activity": "3", "diary_pleasant": "0"},
                      timeout=30).status_code


async def test_answers_submitted_in_redcap_become_the_reports_diary_adherence(
        stack: Stack) -> None:
    """The whole path: a prompt's SMS carries the participant's REDCap survey link of that
    prompt's instance; the submitted survey fires REDCap's Data Entry Trigger; the gateway
    re-fetches it and tells notifications, which counts it answered in time; reports sums
    the counts into the adherence. A late answer and a repeated trigger count nothing."""
    async with stack.start() as notifications, _reports(stack) as reports, \
            EventTap(stack.nats.url, DiaryPromptsCounted.subject) as tap:
        stack.wire_det()
        await stack.save_contact("P-070")
        await stack.allocate("P-070", module="EMDI")
        await stack.scheduled("P-070")
        first = sorted(await _prompts(stack, "P-070"), key=_at)
        assert len(first) == 10
        protocol = notifications.kernel.protocol
        redcap_url = stack.redcap.base_url

        # Two prompts go out; the first is answered while open, the second only too late.
        answered, late = first[3], first[6]
        stack.move_to(_at(answered) + timedelta(minutes=5))
        await eventually(lambda: _settled(stack, "P-070", _at(answered)))
        [text] = _texts_to(stack, "P-070")
        link = _link_in(text, redcap_url)
        assert link == stack.survey_link("P-070", "diary", "diary_arm_1",
                                         prompt_instance(protocol, "P-070", answered["key"]))
        assert await asyncio.to_thread(_answer, link) == 200

        async def was_answered() -> bool:
            return any(m["key"] == answered["key"] and m["answered_at"]
                       for m in await _prompts(stack, "P-070"))
        await eventually(was_answered)
        rows = await asyncio.to_thread(
            lambda: redcap.Project(stack.redcap.api_url, stack.redcap.token).export_records(
                records=["P-070"], events=["diary_arm_1"]))
        assert [(int(r["redcap_repeat_instance"]), r["diary_complete"]) for r in rows
                if r["redcap_repeat_instrument"] == "diary"] == [
            (prompt_instance(protocol, "P-070", answered["key"]), "2")]
        # REDCap fires the trigger again (a re-save): the prompt is not counted twice.
        deliveries = httpx.get(f"{redcap_url}/emulator/projects/101/det/deliveries").json()
        diary_det = next(d for d in deliveries if d["payload"].get("instrument") == "diary")
        assert httpx.post(diary_det["url"], data=diary_det["payload"]).status_code == 200

        stack.move_to(_at(late) + timedelta(minutes=5))
        await eventually(lambda: _settled(stack, "P-070", _at(late)))
        stack.move_to(_at(late) + timedelta(minutes=70))  # it expired unanswered
        late_link = _link_in(_texts_to(stack, "P-070")[-1], redcap_url)
        assert late_link != link
        assert await asyncio.to_thread(_answer, late_link) == 200  # REDCap takes it ...

        async def late_seen() -> bool:  # ... notifications records it late, uncounted
            r = await notifications.client.get(
                "/v1/audit", params={"action": "diary.prompt_answered_late"},
                headers=notifications.as_role("monitor"))
            return r.status_code == 200 and any(e["entity_id"] == late["key"]
                                                for e in r.json())
        await eventually(late_seen)

        prompts = await _prompts(stack, "P-070")
        sent = [m for m in prompts if m["state"] in GONE]
        done = [m for m in sent if m["answered_at"]]
        assert [m["key"] for m in done] == [answered["key"]]
        assert len(sent) == len(_texts_to(stack, "P-070")) >= 2

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
        assert body["by_arm"] is None and body["notes"] == []  # a blinded reader: pooled only
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
