"""The audit API for monitors: reads of participant data are recorded; every chain is
listed through one door (filters, pagination without loss or repeat, JSON or CSV) and
verified against the heads the gateway witnessed."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from gateway.audit_api import decode_cursor, encode_cursor
from gateway.models import WitnessedHead
from services.core.audit import verify
from services.core.db import make_engine, unit_of_work
from services.core.roles import Role

from .support import Edge, Trial

AUDIT = "/api/v1/audit"


def _pages(edge: Edge, **params: object) -> list[dict]:
    entries, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = edge.call("GET", AUDIT, Role.MONITOR, params=query)
        assert page.status_code == 200, page.text
        entries += page.json()["entries"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return entries


def _reads_of(edge: Edge, record: str, route: str) -> list[dict]:
    entries = _pages(edge, service="gateway", participant=record, action="participant_data.*",
                     limit=1000)
    return [e for e in entries if e["after"]["route"] == route]


def test_a_read_of_participant_data_is_recorded(edge: Edge, trial: Trial) -> None:
    record = trial.records[1]
    route = "/api/v1/randomization/v1/allocations/{record}"
    before = len(_reads_of(edge, record, route))
    read = edge.call("GET", f"/api/v1/randomization/v1/allocations/{record}", Role.COORDINATOR,
                     headers={"X-Request-ID": "read-of-gw-002"})
    assert read.status_code == 200
    reads = _reads_of(edge, record, route)
    assert len(reads) == before + 1
    entry = reads[-1]
    assert entry["actor"] == f"apikey:{edge.key_ids[Role.COORDINATOR]}" and entry["role"] == "coordinator"
    assert entry["action"] == "participant_data.read" and entry["record"] == record
    assert entry["after"] == {"route": route, "method": "GET", "status": 200, "params": {"record": record},
                              "caller_request_id": "read-of-gw-002"}
    # The correlation id is the gateway's own; the caller's id is only a labelled field.
    assert entry["correlation_id"] == read.headers["x-request-id"] != "read-of-gw-002"
    assert datetime.fromisoformat(entry["at"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_reading_a_participants_audit_trail_is_itself_recorded(edge: Edge, trial: Trial) -> None:
    record = trial.records[2]
    _pages(edge, participant=record)
    [own] = [e for e in _reads_of(edge, record, AUDIT)][-1:]
    assert own["actor"] == f"apikey:{edge.key_ids[Role.MONITOR]}" and own["role"] == "monitor"


def test_listings_without_participant_data_are_not_recorded(edge: Edge) -> None:
    with edge.session() as session:
        length = verify(session).length
    assert edge.call("GET", "/api/v1/allocation/v1/models/active", Role.MONITOR).status_code == 200
    assert edge.call("GET", "/api/v1/randomization/v1/reports/balance", Role.MONITOR).status_code == 200
    with edge.session() as session:
        assert verify(session).length == length


def _length(edge: Edge, service: str) -> int:
    engine = edge.engine if service == "gateway" else make_engine(f"sqlite:///{edge.home / service}.db")
    with Session(engine) as session:
        return verify(session).length


def _at(entry: dict) -> datetime:
    return datetime.fromisoformat(entry["at"])


def test_pages_cover_every_chain_without_loss_or_repeat(edge: Edge, trial: Trial) -> None:
    lengths = {s: _length(edge, s) for s in ("gateway", *edge.service_urls)}
    paged = _pages(edge, limit=7)
    keys = [(e["service"], e["seq"]) for e in paged]
    assert len(keys) == len(set(keys))
    for service, length in lengths.items():
        seen = sorted(seq for s, seq in keys if s == service)
        assert len(seen) >= length and seen == list(range(1, len(seen) + 1)), service
    assert [_at(e) for e in paged] == sorted(_at(e) for e in paged)


def test_filters_combine(edge: Edge, trial: Trial) -> None:
    allocations = _pages(edge, service="randomization", action="allocation.*")
    assert allocations and all(e["service"] == "randomization" for e in allocations)
    assert all(e["action"].startswith("allocation.") for e in allocations)
    by_actor = _pages(edge, actor=f"apikey:{edge.key_ids[Role.STUDY_MANAGER]}")
    assert by_actor and all(e["actor"] == f"apikey:{edge.key_ids[Role.STUDY_MANAGER]}" for e in by_actor)
    middle = allocations[len(allocations) // 2]["at"]
    since = _pages(edge, service="randomization", action="allocation.*", since=middle)
    until = _pages(edge, service="randomization", action="allocation.*", until=middle)
    assert len(since) + len(until) == len(allocations)
    cut = datetime.fromisoformat(middle)
    assert all(_at(e) >= cut for e in since) and all(_at(e) < cut for e in until)
    [one] = _pages(edge, service="randomization", entity_type=allocations[0]["entity_type"],
                   entity_id=allocations[0]["entity_id"], action=allocations[0]["action"])
    assert one["hash"] == allocations[0]["hash"]
    assert _pages(edge, participant="GW-nobody") == []


def test_csv_has_the_same_entries(edge: Edge, trial: Trial) -> None:
    params = {"service": ["randomization", "safety"], "limit": 5}
    as_json = edge.call("GET", AUDIT, Role.MONITOR, params=params).json()
    by_query = edge.call("GET", AUDIT, Role.MONITOR, params={**params, "format": "csv"})
    by_accept = edge.call("GET", AUDIT, Role.MONITOR, params=params, headers={"Accept": "text/csv"})
    assert by_query.headers["content-type"].startswith("text/csv")
    assert by_query.text == by_accept.text
    rows = list(csv.DictReader(io.StringIO(by_query.text)))
    assert [(r["service"], int(r["seq"]), r["hash"]) for r in rows] == [
        (e["service"], e["seq"], e["hash"]) for e in as_json["entries"]]
    assert json.loads(rows[0]["after"] or "null") == as_json["entries"][0]["after"]
    assert by_query.headers["x-next-cursor"] == as_json["next_cursor"]


@pytest.mark.parametrize(("params", "field"), [
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": encode_cursor({"elsewhere": 3})}, "cursor"),
    ({"since": "2025-01-01T00:00:00"}, "since"),
    ({"service": "billing"}, "service"),
    ({"limit": 0}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"colour": "red"}, "colour"),
])
def test_a_bad_filter_names_the_field(edge: Edge, params: dict, field: str) -> None:
    response = edge.call("GET", AUDIT, Role.MONITOR, params=params)
    assert response.status_code == 422 and field in response.text


def test_cursor_round_trip() -> None:
    assert decode_cursor(encode_cursor({"gateway": 4, "safety": 0})) == {"gateway": 4, "safety": 0}


def test_every_chain_verifies_against_its_witnessed_head(edge: Edge) -> None:
    verdicts = edge.call("GET", f"{AUDIT}/verify", Role.MONITOR).json()
    by_service = {v["service"]: v for v in verdicts["services"]}
    assert set(by_service) == {"gateway", *edge.service_urls}
    assert verdicts["ok"] is True, verdicts
    for service, verdict in by_service.items():
        assert verdict["reachable"] and verdict["first_broken_seq"] is None
        assert verdict["length"] >= 1 and len(verdict["head_hash"]) == 64, service
    assert by_service["randomization"]["witnessed"] is not None  # announced on the bus


@pytest.mark.parametrize(("shift", "words"), [(5, "truncated"), (0, "rewritten")])
def test_a_chain_that_lost_or_changed_entries_is_reported(edge: Edge, shift: int, words: str) -> None:
    with unit_of_work(edge.engine) as session:
        row = session.get(WitnessedHead, "allocation")
        assert row is not None
        kept = (row.length, row.head_hash)
        if shift:  # past the chain's real end (it grows while the services witness the gateway)
            row.length = max(row.length, _length(edge, "allocation")) + shift
        row.head_hash = "f" * 64  # a head the chain never had at that length
        session.add(row)
    try:
        verdicts = edge.call("GET", f"{AUDIT}/verify", Role.MONITOR).json()
    finally:
        with unit_of_work(edge.engine) as session:
            row = session.get(WitnessedHead, "allocation")
            assert row is not None
            row.length, row.head_hash = kept
            session.add(row)
    verdict = next(v for v in verdicts["services"] if v["service"] == "allocation")
    assert verdicts["ok"] is False and verdict["ok"] is False
    assert verdict["truncated"] is (shift > 0) and words in verdict["problem"]
