"""Transient failures retry, permanent ones are dead-lettered, SMS callbacks are signed and
applied once, safety obligations reach the protocol's contacts at once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from services.core import metrics
from services.core.events import SafetyObligationEscalated, SafetyObligationOpened
from services.notifications.dispatch.metrics import DISPATCHED
from services.notifications.domain import sign_callback
from tests.support.harness import eventually

from .conftest import SMS_SECRET, Stack, dlq_messages

EMAIL_1 = datetime(2025, 2, 6, 9, 0, tzinfo=UTC)
SMS_3 = datetime(2025, 2, 13, 9, 0, tzinfo=UTC)
MODULE_WORDS = ("PERT", "EDDT", "EMDI", "Extinction", "Desensitization", "Diary Intervention",
                "personalized", "dysfunctional", "adaptive copers")


async def _message(stack: Stack, record: str, attempt: int) -> dict:
    return next(m for m in await stack.messages(record)
                if m["timepoint"] == "week_4" and m["attempt"] == attempt)


async def test_smtp_451_is_retried_then_sent_once(stack: Stack) -> None:
    async with stack.start():
        await stack.save_contact("P-030")
        await stack.allocate("P-030")
        await stack.scheduled("P-030")
        stack.sink.fail_next(1)  # 451 4.3.0 at the end of DATA
        stack.move_to(EMAIL_1)
        await eventually(lambda: len(stack.sink.messages) == 1)
        assert stack.sink.refused == 1

        async def sent() -> bool:
            return (await _message(stack, "P-030", 1))["state"] == "sent"

        await eventually(sent)
        msg = await _message(stack, "P-030", 1)
        assert msg["tries"] == 2 and msg["error"] == "SMTPDataError 451"
        assert len(stack.sink.messages_to("P-030@participant.example")) == 1


async def test_smtp_550_fails_permanently_and_is_dead_lettered(stack: Stack) -> None:
    dead = metrics.DEAD_LETTERS.labels("notifications", "dispatcher", "permanent")
    before, failed_before = dead._value.get(), DISPATCHED.labels("email", "failed")._value.get()
    async with stack.start():
        await stack.save_contact("P-031")
        await stack.allocate("P-031")
        await stack.scheduled("P-031")
        stack.sink.reject("P-031@participant.example")
        stack.move_to(EMAIL_1)

        async def failed() -> bool:
            return (await _message(stack, "P-031", 1))["state"] == "failed"

        await eventually(failed)
        msg = await _message(stack, "P-031", 1)
        assert msg["tries"] == 1 and msg["error"] == "SMTPRecipientsRefused 550"
        letters: list[bytes] = []

        async def dead_lettered() -> bool:
            letters[:] = await dlq_messages(stack.bus)
            return bool(letters)

        await eventually(dead_lettered)
        envelope = json.loads(letters[0])
        assert envelope["data"]["message_key"] == msg["key"]
        assert envelope["data"]["reason"] == "permanent"
        assert "participant.example" not in letters[0].decode()  # no contact data
    assert dead._value.get() == before + 1
    assert DISPATCHED.labels("email", "failed")._value.get() == failed_before + 1
    assert stack.sink.messages == []


async def test_sms_provider_503_is_retried_with_the_same_key(stack: Stack) -> None:
    async with stack.start():
        await stack.save_contact("P-032", cons_optout___email="1")
        await stack.allocate("P-032")
        await stack.scheduled("P-032")
        stack.provider.fail_next(2)
        stack.move_to(SMS_3)

        async def delivered() -> bool:
            return (await _message(stack, "P-032", 3))["state"] == "delivered"

        await eventually(delivered)
        msg = await _message(stack, "P-032", 3)
        assert msg["tries"] == 3
        [sms] = stack.provider.messages.values()
        assert sms.reference == msg["key"]


def _signed(body: bytes, *, secret: str = SMS_SECRET, at: float | None = None) -> dict[str, str]:
    ts = int(at if at is not None else time.time())
    return {"X-Signature-Timestamp": str(ts), "X-Signature": sign_callback(secret.encode(), ts, body),
            "Content-Type": "application/json"}


async def test_sms_callback_needs_the_signature_and_applies_once(stack: Stack) -> None:
    stack.provider.config.callback_url = None  # this test plays the provider's callbacks
    async with stack.start() as svc:
        await stack.save_contact("P-033", cons_optout___email="1")
        await stack.allocate("P-033")
        await stack.scheduled("P-033")
        stack.move_to(SMS_3)

        async def sent() -> bool:
            return (await _message(stack, "P-033", 3))["state"] == "sent"

        await eventually(sent)
        key = (await _message(stack, "P-033", 3))["key"]
        [sms] = stack.provider.messages.values()
        body = json.dumps({"callback_id": "cb-1", "id": sms.id, "reference": key,
                           "status": "delivered", "error_code": None}).encode()
        url = "/v1/sms/callbacks"
        plain = {"Content-Type": "application/json"}
        assert (await svc.client.post(url, content=body, headers=plain)).status_code == 401
        forged = _signed(body, secret="not-the-secret")
        assert (await svc.client.post(url, content=body, headers=forged)).status_code == 401
        stale = _signed(body, at=time.time() - 3600)
        r = await svc.client.post(url, content=body, headers=stale)
        assert r.status_code == 401 and r.json()["field"] == "X-Signature-Timestamp"
        # A bearer token does not replace the signature.
        r = await svc.client.post(url, content=body, headers=plain | svc.as_role("ops"))
        assert r.status_code == 401
        assert (await _message(stack, "P-033", 3))["state"] == "sent"

        first = await svc.client.post(url, content=body, headers=_signed(body))
        assert first.json() == {"status": "applied", "state": "delivered"}
        again = await svc.client.post(url, content=body, headers=_signed(body))
        assert again.json()["status"] == "duplicate"
        late = body.replace(b"cb-1", b"cb-2").replace(b'"delivered"', b'"failed"')
        ignored = await svc.client.post(url, content=late, headers=_signed(late))
        assert ignored.json() == {"status": "ignored", "state": "delivered"}
        assert (await _message(stack, "P-033", 3))["state"] == "delivered"


async def test_sae_obligation_emails_the_pi_and_the_sponsor_at_once(stack: Stack) -> None:
    async with stack.start():
        stack.move_to(datetime(2025, 3, 2, 23, 30, tzinfo=UTC))  # a Sunday night: no quiet hours
        deadline = datetime(2025, 3, 3, 23, 30, tzinfo=UTC)
        opened = SafetyObligationOpened(
            obligation_id="OB-1", case_id="AE-7", record="P-040", rule="sae_to_sponsor",
            recipients=["sponsor", "principal_investigator"], deadline=deadline,
            awareness_time=deadline - timedelta(hours=24))
        env = await stack.publish(opened, record="P-040")
        await eventually(lambda: len(stack.sink.messages) == 2)
        assert {m.rcpt_tos for m in stack.sink.messages} == {
            ("safety@perpain.example",), ("pi@perpain.example",)}
        for m in stack.sink.messages:
            assert "AE-7" in m.subject and "2025-03-03 23:30 UTC" in m.text
            assert not any(w.lower() in m.text.lower() for w in MODULE_WORDS)
        # Redelivered: nothing new. Escalated: both hear again.
        await stack.bus.publish(env.subject, env.model_dump_json().encode(), msg_id="dup-ob-1")
        await stack.publish(SafetyObligationEscalated(
            obligation_id="OB-1", case_id="AE-7", record="P-040", rule="sae_to_sponsor",
            recipients=["sponsor", "principal_investigator"], deadline=deadline), record="P-040")
        await eventually(lambda: len(stack.sink.messages) == 4)
        assert sum("ESCALATION" in m.subject for m in stack.sink.messages) == 2

        async def all_sent() -> bool:
            return [m["state"] for m in await stack.messages("P-040")] == ["sent"] * 4

        await eventually(all_sent)
        notices = await stack.messages("P-040")
        assert {m["recipient"] for m in notices} == {"sponsor", "principal_investigator"}
        assert {m["kind"] for m in notices} == {"safety_notice"}


async def test_an_email_field_with_several_addresses_is_refused_never_mailed(stack: Stack) -> None:
    """Staff typed two addresses into the consent form's e-mail field: the field is refused
    (named in the audit, never its value), so no reminder reaches either address."""
    from sqlmodel import Session, col, select

    from services.core import audit
    from services.notifications import contacts

    several = "p-041@participant.example, boss@employer.example"
    async with stack.start() as svc:
        await stack.save_contact("P-041", cons_email=several)
        with Session(svc.kernel.engine) as session:
            details = contacts.load(session, stack.rt, "P-041")
            [entry] = session.exec(select(audit.AuditEntry).where(
                col(audit.AuditEntry.action) == "contact.updated",
                col(audit.AuditEntry.record) == "P-041")).all()
        assert details is not None and details.email is None
        assert "email" not in details.reachable() and details.mobile
        assert json.loads(entry.after)["refused"] == ["email"]
        assert "employer" not in (entry.after or "")

        await stack.save_contact("P-041", cons_email=" P-041@Participant.Example ")
        with Session(svc.kernel.engine) as session:
            assert contacts.load(session, stack.rt, "P-041").email == "P-041@participant.example"
    assert stack.sink.messages_to("boss@employer.example") == []
