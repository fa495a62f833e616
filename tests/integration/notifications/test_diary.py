"""Diary prompts for participants of the protocol's diary module: generated ahead in
batches, inside the waking window, spaced, sent while open, never late, never reminded."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.core.db import unit_of_work
from services.notifications.diary import mark_answered
from services.notifications.dispatch.metrics import DIARY_ADHERENCE
from tests.support.harness import eventually

from .conftest import T0, Stack, prompt_instance

BERLIN = ZoneInfo("Europe/Berlin")


def _prompts(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["kind"] == "diary_prompt"]


def _at(m: dict) -> datetime:
    return datetime.fromisoformat(m["due_at"])


async def test_diary_prompts_are_batched_spaced_sent_while_open_and_answered(
        stack: Stack) -> None:
    async with stack.start() as svc:
        await stack.save_contact("P-070")
        await stack.save_contact("P-071")
        await stack.allocate("P-070", module="EMDI")
        await stack.allocate("P-071", module="PERT")
        schedule = await stack.scheduled("P-070")
        await stack.scheduled("P-071")
        assert "diary" not in str(schedule).lower() and "EMDI" not in str(schedule)
        assert _prompts(await stack.messages("P-071")) == []  # not in the diary module

        # Allocated Monday: the diary starts Tuesday; one day is generated ahead.
        first = _prompts(await stack.messages("P-070"))
        assert len(first) == 10
        local = sorted(_at(m).astimezone(BERLIN) for m in first)
        assert {t.date().isoformat() for t in local} == {"2025-01-07"}
        assert all(8 <= t.hour < 22 for t in local)
        assert all(b - a >= timedelta(minutes=30) for a, b in zip(local, local[1:], strict=False))
        assert {m["channel"] for m in first} == {"sms"}

        # Tuesday 13:00 Berlin: the next day is generated; earlier prompts that expired
        # unsent are cancelled, never sent late; an open one goes out.
        open_one = sorted(first, key=_at)[5]
        noon = _at(open_one) + timedelta(minutes=10)
        stack.move_to(noon)

        async def next_day_ready() -> bool:
            return len(_prompts(await stack.messages("P-070"))) == 20

        await eventually(next_day_ready)

        async def settled() -> bool:
            msgs = _prompts(await stack.messages("P-070"))
            return all(m["state"] != "scheduled" for m in msgs if _at(m) <= noon)

        await eventually(settled)
        msgs = {m["key"]: m for m in _prompts(await stack.messages("P-070"))}
        for m in msgs.values():
            if _at(m) + timedelta(minutes=60) <= noon:
                assert m["state"] == "cancelled" and m["cancel_reason"] == "expired"
        assert sum(m["cancel_reason"] == "expired" for m in msgs.values()) >= 4
        assert msgs[open_one["key"]]["state"] in ("sent", "delivered")
        # Each prompt links to its own instance of the REDCap diary survey.
        texts = [s.text for s in stack.provider.messages.values()]
        protocol = svc.kernel.protocol
        own = stack.survey_link("P-070", "diary", "diary_arm_1",
                                prompt_instance(protocol, "P-070", open_one["key"]))
        assert texts and all(f"{stack.redcap.base_url}/surveys/?s=" in t for t in texts)
        assert any(own in t for t in texts)
        assert not any("EMDI" in t or "Diary Intervention" in t for t in texts)

        # A saved answer of a prompt's instance marks that prompt answered.
        later = next(m for m in msgs.values() if _at(m) > noon)
        stack.move_to(_at(later) + timedelta(minutes=5))
        await eventually(lambda: _sent(stack, later["key"]))
        instance = prompt_instance(protocol, "P-070", later["key"])
        await stack.save("P-070", "diary", "diary", {"diary_complete": "2"},
                         repeat_instance=instance)
        await eventually(lambda: _answered(stack, later["key"]))
        await eventually(lambda: DIARY_ADHERENCE._value.get() > 0)
        # The same instance saved again (REDCap re-sent, the sweep found it) counts nothing;
        # nor does an instance no prompt has, or a prompt that never went out.
        unsent = next(m for m in msgs.values() if _at(m) > _at(later) + timedelta(hours=2))
        with unit_of_work(svc.kernel.engine) as session:
            assert mark_answered(session, stack.rt, "P-070", instance=instance) is None
            assert mark_answered(session, stack.rt, "P-070", instance=10_000) is None
            assert mark_answered(session, stack.rt, "P-070", instance=prompt_instance(
                protocol, "P-070", unsent["key"])) is None
        answered = [m for m in _prompts(await stack.messages("P-070")) if m["answered_at"]]
        assert [m["key"] for m in answered] == [later["key"]]

        # Withdrawal stops the diary: what is queued is cancelled, nothing more is generated.
        await stack.save("P-070", "t0_baseline", "withdrawal", {"wd_withdrawn": "1"})
        await eventually(lambda: _none_queued(stack, "P-070"))
        stack.move_to(T0 + timedelta(days=5))
        count = len(_prompts(await stack.messages("P-070")))
        await eventually(lambda: _none_queued(stack, "P-070"))
        assert len(_prompts(await stack.messages("P-070"))) == count


async def _sent(stack: Stack, key: str) -> bool:
    return any(m["key"] == key and m["state"] in ("sent", "delivered")
               for m in await stack.messages("P-070"))


async def _answered(stack: Stack, key: str) -> bool:
    return any(m["key"] == key and m["answered_at"] for m in await stack.messages("P-070"))


async def _none_queued(stack: Stack, record: str) -> bool:
    return all(m["state"] != "scheduled" for m in await stack.messages(record))
