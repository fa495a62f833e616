"""Diary count changes are staged in the outbox of the transaction that makes them, under
the prompt's ISO week of the participant's own calendar; nothing for other messages, and
nothing survives a rolled-back transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.core.db import make_engine, unit_of_work
from services.core.events import DiaryPromptsCounted
from services.core.migrations import run_migrations
from services.core.outbox import OutboxMessage
from services.notifications.app import SPEC
from services.notifications.diary_tally import count_change
from services.notifications.models import Message, Participant

AT = datetime(2025, 12, 29, 9, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    run_migrations(SPEC.migrations, database_url)
    eng = make_engine(database_url)
    with unit_of_work(eng) as session:
        session.add(Participant(record="P-1", allocation_number="A-1", allocated_at=AT,
                                diary=True, diary_first_day=date(2025, 12, 30), created_at=AT))
        session.add(Participant(record="P-2", allocation_number="A-2", allocated_at=AT,
                                created_at=AT))  # not in the diary module
    yield eng
    eng.dispose()


def message(key: str, kind: str = "diary_prompt", ref: str | None = "5.2",
            record: str = "P-1") -> Message:
    return Message(key=key, kind=kind, record=record, channel="sms", ref=ref, due_at=AT,
                   not_before=AT, expires_at=AT + timedelta(hours=1), state="sent", tries=1,
                   created_at=AT, updated_at=AT)


def staged(engine: Engine) -> list[dict]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(
            OutboxMessage.subject == DiaryPromptsCounted.subject)).all()
    return [json.loads(r.envelope) for r in rows]


def test_a_change_is_staged_under_the_local_iso_week(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        assert count_change(session, message("k1", ref="5.2"), sent=1)  # Sun 4 Jan 2026
        assert count_change(session, message("k2", ref="6.0"), sent=-1, answered=-1)  # Mon
    envs = staged(engine)
    assert [(e["record"], e["data"]) for e in envs] == [
        ("P-1", {"record": "P-1", "week": "2026-W01", "prompts_sent": 1, "answered_in_time": 0}),
        ("P-1", {"record": "P-1", "week": "2026-W02", "prompts_sent": -1, "answered_in_time": -1})]


def test_nothing_for_other_messages_no_change_or_a_rolled_back_transaction(engine: Engine) -> None:
    with unit_of_work(engine) as session:
        assert not count_change(session, message("r1", kind="reminder", ref=None), sent=1)
        assert not count_change(session, message("d0"), sent=0, answered=0)
        assert not count_change(session, message("d2", record="P-2"), sent=1)
        assert not count_change(session, None, sent=1)
    with pytest.raises(RuntimeError), unit_of_work(engine) as session:
        assert count_change(session, message("d1"), sent=1)
        raise RuntimeError("the state change failed")
    assert staged(engine) == []
