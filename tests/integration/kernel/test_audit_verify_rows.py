"""The streamed verifier (plain rows) judges every chain as the ORM-object verifier does."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session, select

from services.core import audit
from services.core.db import unit_of_work

MIGRATIONS = Path("gateway/migrations")


def _rows(entries: list[audit.AuditEntry]) -> list[tuple]:
    return [(*(getattr(e, name) for name in audit._HASHED), e.hash) for e in entries]


def test_streamed_and_object_verifiers_agree(engine) -> None:
    with unit_of_work(engine) as session:
        for i in range(30):
            audit.append(session, actor="tester", role="system", action="thing.changed",
                         entity_type="thing", entity_id=str(i), record=None if i % 2 else "R1",
                         before=None if i % 3 else {"value": i}, after={"note": "café ✓", "n": i},
                         reason=None, correlation_id=f"c{i}")
    with Session(engine) as session:
        entries = list(session.exec(select(audit.AuditEntry).order_by(audit.AuditEntry.seq)))
        whole = audit.verify(session)
    assert whole.ok and whole.length == 30
    assert audit.verify_rows(_rows(entries)) == audit.verify_entries(entries) == whole

    changed = _rows(entries)
    changed[11] = (*changed[11][:9], '{"note":"cafe"}', *changed[11][10:])  # `after`
    assert audit.verify_rows(changed).first_broken_seq == 12
    relinked = _rows(entries)
    relinked[20] = (*relinked[20][:12], audit.GENESIS, relinked[20][13])  # `prev_hash`
    assert audit.verify_rows(relinked) == audit.ChainReport(
        20, entries[19].hash, 21, "prev_hash does not match the entry before")
    assert audit.verify_rows(_rows(entries[:5] + entries[6:])).first_broken_seq == 6


_text = st.text()
_maybe = st.none() | st.text()


@given(st.tuples(st.integers(1, 10**12), _text, _text, _text, _text, _text, _text, _maybe,
                 _maybe, _maybe, _maybe, _maybe, _text))
def test_written_out_body_is_canonical_json(row: tuple) -> None:
    at = "2026-01-01T00:00:00.000000+00:00"
    body = dict(zip(audit._HASHED, row, strict=True))
    body["at"] = at
    assert audit._body_json(row, at) == audit.canonical_json(body)
