"""Signed audit checkpoints: a verification re-hashes only what came after the newest one,
a forged checkpoint is refused, a rewrite before one is still found; filtered listings page
by `seq` (keyset) and return every entry once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session

from services.core import audit
from services.core.audit_api import AuditQuery, select_entries
from services.core.db import unit_of_work

MIGRATIONS = Path("services/allocation/migrations")
KEY = audit.checkpoint_key(b"the service's private key material, 32+ bytes long")
OTHER = audit.checkpoint_key(b"somebody else's key material, also long enough")


def _append(engine, n: int, start: int = 0, **fields) -> None:
    with unit_of_work(engine) as session:
        for i in range(start, start + n):
            audit.append(session, actor=f"user-{i % 3}", role="system",
                         action=("thing.made", "thing.changed")[i % 2], entity_type="thing",
                         entity_id=str(i), record=f"R{i % 7}", before={"value": i},
                         after={"value": i + 1}, reason="test", **fields)


def _verify(engine, **kwargs) -> audit.ChainReport:
    with unit_of_work(engine) as session:  # commits the checkpoint the verification stages
        return audit.verify(session, **kwargs)


def _drop_triggers(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("DROP TRIGGER audit_entry_append_only ON audit_entry")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_entry_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_entry_no_delete")


def test_a_verification_after_n_new_entries_reads_only_those_n(engine) -> None:
    _append(engine, 40)
    first = _verify(engine, key=KEY)
    assert first.ok and first.length == 40 and first.rows_read == 40
    assert first.checkpoint_seq is None
    _append(engine, 7, start=40)
    second = _verify(engine, key=KEY)
    assert second.ok and second.length == 47
    assert second.rows_read == 7 and second.checkpoint_seq == 40
    nothing_new = _verify(engine, key=KEY)
    assert nothing_new.ok and nothing_new.length == 47 and nothing_new.rows_read == 0
    whole = _verify(engine, key=KEY, full=True)
    assert whole.ok and whole.rows_read == 47 and whole.checkpoint_seq is None
    with Session(engine) as session:  # the incremental verdict is the whole one
        assert audit.verify(session) == whole


def test_a_forged_checkpoint_is_refused(engine) -> None:
    _append(engine, 30)
    with Session(engine) as session:
        entry_20 = session.get(audit.AuditEntry, 20)
        assert entry_20 is not None
    forged = OTHER.sign(20, entry_20.hash)  # a signature, but not with this service's key
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO audit_checkpoint (seq, hash, key_id, signature, at) "
            f"VALUES (20, '{entry_20.hash}', '{KEY.key_id}', '{forged}', CURRENT_TIMESTAMP)")
    report = _verify(engine, key=KEY)
    assert not report.ok
    assert report.first_broken_seq == 20 and "signature" in (report.problem or "")
    with Session(engine) as session:  # nothing was staged on a refused verification
        assert session.get(audit.AuditCheckpoint, 30) is None


def test_a_checkpoint_of_another_key_is_not_trusted(engine) -> None:
    _append(engine, 12)
    assert _verify(engine, key=OTHER).ok  # e.g. before a key rotation
    report = _verify(engine, key=KEY)
    assert report.ok and report.rows_read == 12 and report.checkpoint_seq is None


def test_a_rewritten_chain_before_a_checkpoint_is_found(engine) -> None:
    _append(engine, 25)
    assert _verify(engine, key=KEY).ok
    _drop_triggers(engine)
    with engine.begin() as conn:  # content altered, hash left: only a full verify sees it
        conn.exec_driver_sql("UPDATE audit_entry SET actor = 'mallory' WHERE seq = 9")
    assert _verify(engine, key=KEY).ok  # the checkpoint vouches for entries 1..25
    whole = _verify(engine, key=KEY, full=True)
    assert whole.first_broken_seq == 9 and not whole.ok
    with engine.begin() as conn:  # a rewrite that re-hashes the rest changes entry 25's hash
        conn.exec_driver_sql(f"UPDATE audit_entry SET hash = '{'f' * 64}' WHERE seq = 25")
    report = _verify(engine, key=KEY)
    assert report.first_broken_seq == 25 and "checkpoint" in (report.problem or "")


def test_a_truncated_chain_after_a_checkpoint_is_found(engine) -> None:
    _append(engine, 10)
    assert _verify(engine, key=KEY).ok
    _drop_triggers(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_entry WHERE seq >= 8")
    report = _verify(engine, key=KEY)
    assert not report.ok and report.first_broken_seq == 10


def test_texts_the_database_quotes_differently_still_verify(engine) -> None:
    """The fast path has the database build each entry's canonical JSON; any text it would
    quote otherwise than Python's json is re-built in Python, not called broken."""
    odd = "tab\t nl\n cr\r bell\x07 del\x7f quote\" back\\ slash/ é ☃ \u2028 😀"
    with unit_of_work(engine) as session:
        audit.append(session, actor=odd, role="system", action="odd.text", entity_type="t",
                     entity_id=odd, record=odd, before={"x": odd}, after=[odd], reason=odd,
                     correlation_id=odd)
    _append(engine, 3, start=1)
    report = _verify(engine, key=KEY, full=True)
    assert report.ok and report.length == 4


@pytest.mark.parametrize("filters", [{}, {"record": "R3"}, {"action": "thing.*"},
                                     {"actor": "user-1", "action": "thing.changed"}])
def test_keyset_pages_return_every_matching_entry_once(engine, filters: dict) -> None:
    _append(engine, 120)
    seen: list[int] = []
    with Session(engine) as session:
        after = 0
        while True:
            page = select_entries(session, AuditQuery(**filters, after_seq=after, limit=9))
            if not page:
                break
            seen.extend(e.seq for e in page if e.seq is not None)
            after = seen[-1]
        everything = select_entries(session, AuditQuery(**filters, limit=1000))
    assert seen == [e.seq for e in everything]
    assert len(seen) == len(set(seen)) > 0
