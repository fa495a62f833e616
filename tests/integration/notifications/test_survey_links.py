"""A reminder is sent with the participant's REDCap survey link, fetched through the gateway
when it goes out, or not at all: REDCap down at send time puts it back through the retry
path, and it goes out once REDCap answers again; a link never comes, it is given up and
dead-lettered without an e-mail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from sqlmodel import Session, select

from services.core.audit import AuditEntry
from services.notifications.models import Message
from tests.support.harness import eventually

from .conftest import Stack, dlq_messages

# week_4 of a participant allocated on Monday 6 January 2025: first e-mail on 6 February.
EMAIL_1 = datetime(2025, 2, 6, 9, 0, tzinfo=UTC)
WEEK_4 = "week_4_arm_1"


def first_reminder(stack: Stack, record: str) -> Message | None:
    with Session(stack.svc.kernel.engine) as session:
        return session.exec(select(Message).where(
            Message.record == record, Message.timepoint == "week_4",
            Message.attempt == 1)).first()


def retries_of(stack: Stack, key: str) -> list[AuditEntry]:
    with Session(stack.svc.kernel.engine) as session:
        return list(session.exec(select(AuditEntry).where(
            AuditEntry.entity_id == key, AuditEntry.action == "message.retry_scheduled")))


async def test_redcap_down_at_send_time_holds_the_reminder_back_until_its_link_comes(
        stack: Stack) -> None:
    async with stack.start():
        await stack.save_contact("P-070")
        await stack.allocate("P-070")
        await stack.scheduled("P-070")
        # REDCap fails the next two survey-link exports (then answers again).
        stack.redcap.set_fault("error", status=500, remaining=2, contents=["surveyLink"])
        stack.move_to(EMAIL_1)
        await eventually(lambda: len(stack.sink.messages) == 1, timeout=60)
        msg = first_reminder(stack, "P-070")
        assert msg is not None and msg.state in ("sent", "delivered") and msg.tries == 3
        retries = retries_of(stack, msg.key)
        assert len(retries) == 2
        assert all(r.reason == "SurveyLinkUnavailable: redcap" for r in retries)

        [mail] = stack.sink.messages  # one e-mail, after REDCap came back, with the link
        link = await asyncio.to_thread(stack.survey_link, "P-070", "mpid_ps", WEEK_4)
        assert link in mail.text
        page = await asyncio.to_thread(httpx.get, link, timeout=30)
        assert page.status_code == 200 and "<form" in page.text  # REDCap's survey takes it


async def test_a_reminder_whose_link_never_comes_is_given_up_without_an_email(
        stack: Stack) -> None:
    async with stack.start():
        await stack.save_contact("P-071")
        await stack.allocate("P-071")
        await stack.scheduled("P-071")
        stack.redcap.set_fault("error", status=503, contents=["surveyLink"])
        stack.move_to(EMAIL_1)

        def given_up() -> bool:
            msg = first_reminder(stack, "P-071")
            return msg is not None and msg.state == "failed"

        await eventually(given_up, timeout=60)
        assert stack.sink.messages == []
        dead = [m for m in await dlq_messages(stack.bus) if b'"P-071"' in m]
        assert len(dead) == 1 and b'"retries_exhausted"' in dead[0]
        assert b"surveys/?s=" not in dead[0]  # no link (a credential) in the dead letter
