"""Phone and letter reminders become staff tasks: listed when due, claimed by one
coordinator, closed with an outcome that moves the reminder's delivery state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.support.harness import eventually

from .conftest import Stack

# t1 of a participant allocated on 6 January 2025 is due Monday 31 March; its letter
# (day +21) goes out on Monday 21 April at 10:00 Berlin = 08:00 UTC (summer time).
LETTER_DAY = datetime(2025, 4, 21, 8, 0, 1, tzinfo=UTC)


async def _open_tasks(stack: Stack) -> list[dict]:
    r = await stack.svc.client.get("/v1/tasks", headers=stack.svc.as_role("coordinator"))
    return r.json()  # type: ignore[no-any-return]


async def _message_state(stack: Stack, timepoint: str, attempt: int) -> str:
    return next(m["state"] for m in await stack.messages("P-060")
                if m["timepoint"] == timepoint and m["attempt"] == attempt)


async def test_phone_and_letter_tasks_are_claimed_and_closed_with_an_outcome(
        stack: Stack) -> None:
    async with stack.start() as svc:
        await stack.save_contact("P-060", cons_language="de")
        await stack.allocate("P-060")
        await stack.scheduled("P-060")
        # Weeks 4 and 8 are complete: only t1's reminders remain.
        for event in ("week_4", "week_8"):
            await stack.save("P-060", event, "pgic", {"mpid_ps_complete": "2",
                                                      "pgic_complete": "2"})
        stack.move_to(LETTER_DAY)

        async def two_tasks() -> bool:
            return len(await _open_tasks(stack)) == 2

        await eventually(two_tasks)
        phone, letter = await _open_tasks(stack)
        assert (phone["channel"], letter["channel"]) == ("phone", "letter")
        assert phone["timepoint"] == letter["timepoint"] == "t1"
        assert "+491511000" in phone["call_script"]
        assert letter["letter_url"].endswith(f"/tasks/{letter['id']}/letter")

        alice, bob = svc.as_role("coordinator", "alice"), svc.as_role("coordinator", "bob")
        assert (await svc.client.get("/v1/tasks", headers=svc.as_role("assessor"))
                ).status_code == 403
        claimed = await svc.client.post(f"/v1/tasks/{phone['id']}/claim", headers=alice)
        assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "alice"
        again = await svc.client.post(f"/v1/tasks/{phone['id']}/claim", headers=alice)
        assert again.status_code == 200  # claiming twice is harmless
        taken = await svc.client.post(f"/v1/tasks/{phone['id']}/claim", headers=bob)
        assert taken.status_code == 409 and taken.json()["field"] == "task_id"
        url = f"/v1/tasks/{phone['id']}/outcome"
        assert (await svc.client.post(url, json={"outcome": "reached"}, headers=bob)
                ).status_code == 409
        wrong = await svc.client.post(url, json={"outcome": "sent"}, headers=alice)
        assert wrong.status_code == 422 and wrong.json()["field"] == "outcome"
        bad = await svc.client.post(url, json={"outcome": "maybe"}, headers=alice)
        assert bad.status_code == 422
        assert await _message_state(stack, "t1", 4) == "claimed"  # refused requests changed nothing
        done = await svc.client.post(url, json={"outcome": "voicemail"}, headers=alice)
        assert done.status_code == 200 and done.json()["outcome"] == "voicemail"
        assert await _message_state(stack, "t1", 4) == "delivered"

        html = await svc.client.get(f"/v1/tasks/{letter['id']}/letter", headers=bob)
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        page = html.text
        assert "P. P-060" in page and "Hauptstraße 5" in page and "10115 Berlin" in page
        assert "Befragung nach 12 Wochen" in page and "21.04.2025" in page  # German letter
        # T1 has several surveys: the letter gives the participant's REDCap survey queue.
        queue = await asyncio.to_thread(stack.survey_queue_link, "P-060")
        assert queue.startswith(stack.redcap.base_url) and queue in page
        for word in ("PERT", "EMDI", "EDDT", "personalized", "dysfunctional"):
            assert word.lower() not in page.lower()
        not_a_letter = await svc.client.get(f"/v1/tasks/{phone['id']}/letter", headers=bob)
        assert not_a_letter.status_code == 404
        await svc.client.post(f"/v1/tasks/{letter['id']}/claim", headers=bob)
        posted = await svc.client.post(f"/v1/tasks/{letter['id']}/outcome",
                                       json={"outcome": "sent"}, headers=bob)
        assert posted.status_code == 200
        assert await _message_state(stack, "t1", 5) == "sent"
        assert await _open_tasks(stack) == []
        missing = await svc.client.post("/v1/tasks/9999/claim", headers=bob)
        assert missing.status_code == 404

        report = (await svc.client.get("/v1/reports/retention",
                                       headers=svc.as_role("study_manager"))).json()
        channels = {c["channel"]: c for c in report["channels"]}
        assert channels["phone"]["delivered"] == 1 and channels["letter"]["sent"] == 1
