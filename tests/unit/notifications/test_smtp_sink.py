"""The SMTP sink simulator: a real server that records messages and fails on request."""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from services.notifications.domain import FailureKind, classify_exception
from sim.smtp import SmtpSink

ROOT = Path(__file__).resolve().parents[3]


def reminder(to: str = "erika@example.org", subject: str = "Erinnerung") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "studie@perpain.example"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Guten Tag,\nbitte füllen Sie die Fragebögen aus.\n")
    return msg


async def test_message_sent_with_aiosmtplib_is_recorded(tmp_path: Path):
    sink = SmtpSink(folder=tmp_path / "mail", sqlite_path=tmp_path / "mail.db")
    async with sink.serving() as s:
        await aiosmtplib.send(reminder(), hostname=s.host, port=s.port)
        async with asyncio.timeout(5):
            received, = await s.wait_for(1)
    assert received.mail_from == "studie@perpain.example"
    assert received.rcpt_tos == ("erika@example.org",)
    assert received.subject == "Erinnerung"
    assert "Fragebögen" in received.text
    eml = (tmp_path / "mail" / "000001.eml").read_bytes()
    assert b"X-Sink-Rcpt-To: erika@example.org" in eml and b"Subject: Erinnerung" in eml
    with sqlite3.connect(tmp_path / "mail.db") as db:
        row = db.execute("SELECT seq, mail_from, rcpt_tos FROM messages").fetchone()
    assert row[0] == 1 and row[1] == "studie@perpain.example"
    assert json.loads(row[2]) == ["erika@example.org"]


async def test_answers_451_to_the_next_messages_then_accepts():
    sink = SmtpSink()
    sink.fail_next(2)
    async with sink.serving() as s:
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPDataError) as err:
                await aiosmtplib.send(reminder(), hostname=s.host, port=s.port)
            assert err.value.code == 451
            assert classify_exception(err.value) is FailureKind.TRANSIENT
        assert s.messages == []
        await aiosmtplib.send(reminder(), hostname=s.host, port=s.port)
    assert len(sink.messages) == 1 and sink.refused == 2


async def test_answers_550_to_rejected_recipients_only():
    sink = SmtpSink()
    sink.reject("Gone@Example.org")
    async with sink.serving() as s:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
            await aiosmtplib.send(reminder("gone@example.org"), hostname=s.host, port=s.port)
        assert err.value.recipients[0].code == 550
        assert classify_exception(err.value) is FailureKind.PERMANENT
        await aiosmtplib.send(reminder("here@example.org"), hostname=s.host, port=s.port)
    assert [m.rcpt_tos for m in sink.messages] == [("here@example.org",)]
    assert sink.messages_to("HERE@example.org")


async def test_auth_is_required_when_credentials_are_set():
    sink = SmtpSink(credentials=("tailor", "pw"))
    async with sink.serving() as s:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await aiosmtplib.send(reminder(), hostname=s.host, port=s.port,
                                  username="tailor", password="wrong", start_tls=False)
        with pytest.raises(aiosmtplib.SMTPResponseException) as err:
            await aiosmtplib.send(reminder(), hostname=s.host, port=s.port, start_tls=False)
        assert err.value.code == 530
        await aiosmtplib.send(reminder(), hostname=s.host, port=s.port,
                              username="tailor", password="pw", start_tls=False)
    assert len(sink.messages) == 1


def test_runs_in_a_thread_for_synchronous_clients():
    sink = SmtpSink().start_in_thread()
    try:
        with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
            client.send_message(reminder())
        assert len(sink.messages) == 1
    finally:
        sink.stop_thread()


def test_runs_as_a_process_on_the_given_port():
    proc = subprocess.Popen([sys.executable, "-m", "sim.smtp", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line
        port = int(line.rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.send_message(reminder())
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert "after 1 messages" in out
