"""The edge's pure rules, without a server: paging merged chains loses and repeats
nothing; what the guard forwards is what it checked; strict JSON; who read whose data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit_api import CHAINS, decode_cursor, page_of
from gateway.schemas import AuditEntryOut
from gateway.security.guard import is_clean
from gateway.security.hygiene import StrictJsonError, check_strict_json
from gateway.security.reads import Access, named_participant, path_params
from services.core.internal_token import Caller
from services.core.roles import Role, find_rule

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def _entry(service: str, seq: int, minute: int) -> AuditEntryOut:
    return AuditEntryOut(service=service, seq=seq, at=T0 + timedelta(minutes=minute), actor="a",
                         role="system", action="x", entity_type="t", entity_id="1", record=None,
                         before=None, after=None, reason=None, correlation_id=None,
                         prev_hash="0" * 64, hash=f"{service}{seq}")


chains = st.dictionaries(st.sampled_from(CHAINS), st.lists(st.integers(0, 30), max_size=12),
                         min_size=1)


@settings(max_examples=200, deadline=None)
@given(chains=chains, limit=st.integers(1, 8))
def test_paging_merged_chains_returns_every_entry_once(chains: dict[str, list[int]], limit: int) -> None:
    # Each chain's times may even step back (a clock adjusted): pages still lose nothing.
    stored = {s: [_entry(s, i + 1, m) for i, m in enumerate(minutes)] for s, minutes in chains.items()}
    seen: list[tuple[str, int]] = []
    positions: dict[str, int] = {}
    for _ in range(200):
        batches = {s: [e for e in entries if e.seq > positions.get(s, 0)][:limit]
                   for s, entries in stored.items()}
        page, cursor = page_of(batches, positions, limit)
        assert len(page) <= limit
        seen += [(e.service, e.seq) for e in page]
        if cursor is None:
            break
        positions = decode_cursor(cursor)
    assert sorted(seen) == sorted((s, e.seq) for s, entries in stored.items() for e in entries)


@pytest.mark.parametrize(("path", "clean"), [
    ("/api/v1/audit", True), ("/api/v1/audit/", True), ("/", True),
    ("/api/v1/randomization/v1/allocations/../lists", False),
    ("/api/v1/randomization/v1/allocations/.", False), ("/api/v1//audit", False),
    ("/api/v1/randomization/v1/allocations/..", False), ("api/v1/audit", False),
])
def test_only_clean_paths_are_checked_and_forwarded(path: str, clean: bool) -> None:
    assert is_clean(path) is clean


@pytest.mark.parametrize("body", [b'{"a": 1, "a": 2}', b'{"a": NaN}', b'{"a": Infinity}', b"[1, 2",
                                  b'{"a": "\xff"}', b"[" * 100_000 + b"]" * 100_000])
def test_strict_json_refuses(body: bytes) -> None:
    with pytest.raises(StrictJsonError):
        check_strict_json(body)


def test_strict_json_accepts_plain_json() -> None:
    check_strict_json(b'{"a": [1, 2.5, "x", null, true], "b": {"a": 1}}')


def test_the_participant_comes_from_the_path_or_the_query() -> None:
    template = "/api/v1/randomization/v1/allocations/{record}"
    assert path_params(template, "/api/v1/randomization/v1/allocations/P-7") == {"record": "P-7"}
    assert named_participant({"record": "P-7"}, b"record=P-8") == "P-7"
    assert named_participant({}, b"limit=5&participant=P-9") == "P-9"
    assert named_participant({}, b"limit=5") is None


def test_a_listing_without_participant_is_no_access_to_record() -> None:
    caller = Caller(subject="apikey:1", role=Role.MONITOR)
    rule = find_rule("GET", "/api/v1/audit")
    assert rule is not None
    kwargs = {"method": "GET", "path": "/api/v1/audit", "request_id": None}
    assert Access.of(rule, caller, query_string=b"limit=5", **kwargs) is None
    access = Access.of(rule, caller, query_string=b"participant=P-1", **kwargs)
    assert access is not None and access.record == "P-1"
