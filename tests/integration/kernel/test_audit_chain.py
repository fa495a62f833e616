"""The audit chain: append, verify, append-only enforced by the database, tamper found."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from services.core import audit
from services.core.db import unit_of_work

MIGRATIONS = Path("gateway/migrations")


def _append_many(engine, n: int) -> None:
    with unit_of_work(engine) as session:
        for i in range(n):
            audit.append(session, actor="tester", role="system", action="thing.changed",
                         entity_type="thing", entity_id=str(i), record=f"R{i % 7}",
                         before={"value": i}, after={"value": i + 1}, reason="test")


def test_ten_thousand_entries_append_and_verify(engine) -> None:
    _append_many(engine, 10_000)
    with Session(engine) as session:
        report = audit.verify(session)
    assert report.ok, report
    assert report.length == 10_000


def test_update_and_delete_are_refused_by_the_database(engine) -> None:
    _append_many(engine, 3)
    for statement in ("UPDATE audit_entry SET actor = 'mallory' WHERE seq = 2",
                      "DELETE FROM audit_entry WHERE seq = 3"):
        with pytest.raises(DatabaseError, match="append-only"), unit_of_work(engine) as session:
            session.exec(text(statement))  # type: ignore[call-overload]
    with Session(engine) as session:
        assert audit.verify(session).length == 3


def _drop_triggers(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER audit_entry_append_only ON audit_entry")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_entry_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_entry_no_delete")


def test_row_altered_behind_the_databases_back_is_found_at_its_index(engine) -> None:
    _append_many(engine, 10_000)
    _drop_triggers(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_entry SET after = '{\"value\":0}' WHERE seq = 4711")
    with Session(engine) as session:
        report = audit.verify(session)
    assert report.first_broken_seq == 4711
    assert report.length == 4710


def test_removed_row_is_found(engine) -> None:
    _append_many(engine, 50)
    _drop_triggers(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_entry WHERE seq = 20")
    with Session(engine) as session:
        assert audit.verify(session).first_broken_seq == 20


def test_hash_covers_every_field(engine) -> None:
    _append_many(engine, 1)
    with Session(engine) as session:
        entry = audit.head(session)
        assert entry is not None
        for field, value in [("actor", "x"), ("reason", "y"), ("record", "R9"), ("before", "{}")]:
            original = getattr(entry, field)
            setattr(entry, field, value)
            assert audit.entry_hash(entry) != entry.hash, field
            setattr(entry, field, original)
        session.expunge_all()


def test_an_append_rolled_back_with_a_savepoint_does_not_break_the_chain(engine) -> None:
    with unit_of_work(engine) as session:
        audit.append(session, actor="t", role="system", action="a", entity_type="x", entity_id="1")
        try:
            with session.begin_nested():
                audit.append(session, actor="t", role="system", action="b", entity_type="x",
                             entity_id="2")
                raise RuntimeError("refused: the savepoint is rolled back")
        except RuntimeError:
            pass
        audit.append(session, actor="t", role="system", action="c", entity_type="x", entity_id="3")
    with Session(engine) as session:
        report = audit.verify(session)
    assert report.ok and report.length == 2
