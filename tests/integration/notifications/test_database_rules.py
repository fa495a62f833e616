"""The database itself caps reminders at the protocol's five per participant and timepoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from services.core.db import make_engine, unit_of_work
from services.core.migrations import run_migrations
from services.core.protocol import ProtocolError, load_protocol
from services.notifications.app import SPEC
from services.notifications.bootstrap import check_reminder_cap
from services.notifications.domain import reminder_key
from services.notifications.models import Message

AT = datetime(2025, 2, 6, 9, tzinfo=UTC)
CHANNELS = ("email", "sms", "phone", "letter")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    run_migrations(SPEC.migrations, database_url)
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def reminder(attempt: int | None, channel: str = "email", *, record: str = "P-1",
             timepoint: str | None = "week_4", kind: str = "reminder") -> Message:
    key = reminder_key(record, timepoint or "-", attempt or 0, channel)
    return Message(key=key, kind=kind, record=record, timepoint=timepoint, attempt=attempt,
                   channel=channel, due_at=AT, not_before=AT, state="scheduled", tries=0,
                   created_at=AT, updated_at=AT)


def insert(engine: Engine, msg: Message) -> None:
    with unit_of_work(engine) as session:
        session.add(msg)


def stored(engine: Engine, record: str = "P-1") -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Message)
                            .where(Message.record == record)).one()


def test_the_database_refuses_a_sixth_reminder(engine: Engine) -> None:
    for attempt in range(1, 6):
        insert(engine, reminder(attempt, CHANNELS[attempt % 4]))
    with pytest.raises(IntegrityError, match="(?i)check|ck_message_reminder_cap"):
        insert(engine, reminder(6, "letter"))
    with pytest.raises(IntegrityError):  # nor a reminder number 0
        insert(engine, reminder(0, "sms"))
    assert stored(engine) == 5


def test_two_reminders_cannot_share_a_number_even_on_different_channels(engine: Engine) -> None:
    insert(engine, reminder(1, "email"))
    with pytest.raises(IntegrityError, match="(?i)unique|uq_message_reminder_attempt"):
        insert(engine, reminder(1, "sms"))
    insert(engine, reminder(1, "email", timepoint="week_8"))  # another timepoint is fine
    assert stored(engine) == 2


def test_a_reminder_must_carry_its_number_and_timepoint(engine: Engine) -> None:
    with pytest.raises(IntegrityError):
        insert(engine, reminder(None))
    insert(engine, reminder(None, kind="diary_prompt", timepoint=None))  # prompts are not capped
    assert stored(engine) == 1


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(1, 9)), channels=st.lists(
    st.sampled_from(CHANNELS), min_size=8, max_size=8))
def test_never_more_than_five_stored_whatever_the_insert_order(
        engine: Engine, order: list[int], channels: list[str]) -> None:
    with unit_of_work(engine) as session:
        session.exec(delete(Message))  # type: ignore[call-overload]
    for attempt, channel in zip(order, channels, strict=True):
        try:
            insert(engine, reminder(attempt, channel))
        except IntegrityError:
            pass
        assert stored(engine) <= 5
    assert stored(engine) == 5


def test_start_up_refuses_a_protocol_that_disagrees_with_the_database(engine: Engine) -> None:
    kernel = SimpleNamespace(engine=engine, protocol=load_protocol("protocols/perpain-pilot.yaml"))
    check_reminder_cap(kernel)  # type: ignore[arg-type]  # agrees: no error
    with engine.begin() as conn:
        conn.execute(text("UPDATE reminder_cap SET max_per_timepoint = 4"))
    with pytest.raises(ProtocolError, match="reminders.max_per_timepoint"):
        check_reminder_cap(kernel)  # type: ignore[arg-type]
