"""Minimization in the service: sealed draws, each decision's imbalance scores sealed and
digested in the audit chain, exactly once under concurrency (SQLite and PostgreSQL), a
replay from the unsealed seed at closure that checks every decision."""

from __future__ import annotations

import hashlib
import json
import random
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.core import audit
from services.core.audit import AuditEntry
from services.core.db import unit_of_work
from services.core.errors import InvalidInput
from services.randomization.domain.minimization import replay
from services.randomization.keys import ListKey
from services.randomization.lists import MINIMIZATION_SEED_TAG
from services.randomization.models import AllocationRow, RandomizationList
from services.randomization.service import (
    DETAIL,
    Actor,
    AllocationRace,
    AllocationRequest,
    Context,
    allocate,
    disclose,
)
from tests.support.designs import minimization_trial

from .support import allocation_rows, sealed_list_direct, unseal_closed

MANAGER = Actor("sm", "study_manager")


@pytest.fixture
def mini(list_key: ListKey) -> Context:
    return Context(key=list_key, protocol=minimization_trial())


def _request(record: str, site: str, peg: str) -> AllocationRequest:
    return AllocationRequest(record=record, cluster=None, site=site, pilot=False,
                             source="manual", actor=MANAGER, reason="test",
                             levels={"peg": peg})


def _allocate(engine: Engine, ctx: Context, req: AllocationRequest) -> str:
    for _ in range(8):
        try:
            with unit_of_work(engine) as session:
                row, _created = allocate(session, ctx, req)
                return row.allocation_number
        except AllocationRace:  # lost the first insert of the decision counter: ask again
            continue
    raise AssertionError(f"{req.record} never allocated")


_unseal = unseal_closed


def test_concurrent_minimization_decides_each_participant_once(migrated: Engine,
                                                                mini: Context) -> None:
    list_id = sealed_list_direct(migrated, mini, 1)
    rng = random.Random(15)
    records = [f"M{i:03d}" for i in range(120)]
    levels = {r: (rng.choice(["rush", "uic"]), rng.choice(["low", "high"])) for r in records}
    jobs = records + rng.sample(records, 25)  # 25 participants asked for twice at once
    rng.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=12) as pool:
        numbers = list(pool.map(lambda r: (r, _allocate(migrated, mini, _request(r, *levels[r]))),
                                jobs))
    by_record: dict[str, set[str]] = {}
    for record, number in numbers:
        by_record.setdefault(record, set()).add(number)
    assert len(by_record) == 120 and all(len(n) == 1 for n in by_record.values())
    rows = allocation_rows(migrated)
    assert sorted(r.record for r in rows) == sorted(records)
    with Session(migrated) as session:
        detail = {r.record: disclose(mini, r) for r in rows}
    decisions = sorted((d.seq or 0, record) for record, d in detail.items())
    assert [n for n, _ in decisions] == list(range(1, 121))  # one decision each, no gap
    for record, d in detail.items():
        assert d.levels == {"site": levels[record][0], "peg": levels[record][1]}
        assert d.cluster is None and d.decision is not None
        assert set(d.decision["scores"]) == {"p4p", "ktw"}
        assert {r.module for r in rows if r.record == record} == {
            "P4P" if d.arm == "p4p" else "KTW"}
    # Replayed from the seed in decision order, every arm and every score comes back.
    opened = _unseal(migrated, mini, list_id)
    assert opened.verified, opened.problems
    cohort = [detail[r].levels or {} for _, r in decisions]
    with Session(migrated) as session:
        lst = session.get(RandomizationList, list_id)
        assert lst is not None
        design = mini.design_of(lst).minimization
    assert design is not None
    again = replay(design, opened.seed, cohort)
    assert [a.arm for a in again] == [detail[r].arm for _, r in decisions]
    assert [a.scores for a in again] == [detail[r].decision["scores"] for _, r in decisions]
    with unit_of_work(migrated) as session:
        assert audit.verify(session).ok


def test_each_decision_is_audited_as_a_digest_and_the_seed_is_committed(
        migrated: Engine, mini: Context) -> None:
    list_id = sealed_list_direct(migrated, mini, 1)
    for i, (site, peg) in enumerate([("rush", "low"), ("rush", "low"), ("uic", "high")]):
        _allocate(migrated, mini, _request(f"A{i}", site, peg))
    rows = {r.record: r for r in allocation_rows(migrated)}
    with Session(migrated) as session:
        entries = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
    created = [e for e in entries if e.action == "allocation.created"]
    assert len(created) == 3
    for e in created:
        after = json.loads(e.after or "{}")
        d = disclose(mini, rows[e.record or ""])
        # The scores are in the sealed detail; the chain holds its salted digest.
        assert d.decision is not None and set(d.decision["scores"]) == {"p4p", "ktw"}
        assert after["detail_digest"] == d.digest(e.record or "", after["allocation_number"])
        assert "scores" not in (e.after or "") and d.arm not in (e.after or "")
    sealed = next(e for e in entries if e.action == "list.sealed")
    opened = _unseal(migrated, mini, list_id)
    assert opened.verified
    commitment = hashlib.sha256(MINIMIZATION_SEED_TAG + opened.seed).hexdigest()
    assert json.loads(sealed.after or "{}")["seed_commitment"] == commitment


def test_a_changed_decision_fails_the_replay_at_unsealing(migrated: Engine,
                                                          mini: Context) -> None:
    list_id = sealed_list_direct(migrated, mini, 1)
    for i in range(6):
        _allocate(migrated, mini, _request(f"B{i}", "rush", "high"))
    # Forge decision 3: swap its arm inside a properly sealed detail (as a key holder could).
    with unit_of_work(migrated) as session:
        rows = list(session.exec(select(AllocationRow)))
        row = next(r for r in rows if disclose(mini, r).seq == 3)
        d = disclose(mini, row)
        forged = {**d.body(), "arm": "ktw" if d.arm == "p4p" else "p4p"}
        row.sealed_detail = mini.key.seal(DETAIL, (row.list_id, row.record, row.allocation_number),
                                          audit.canonical_json(forged).encode())
        session.add(row)
    opened = _unseal(migrated, mini, list_id)
    assert not opened.verified
    assert any("decision 3" in p for p in opened.problems)


def test_missing_or_unknown_levels_are_refused_naming_the_factor(migrated: Engine,
                                                                 mini: Context) -> None:
    sealed_list_direct(migrated, mini, 1)
    for req, field in [
        (AllocationRequest(record="C1", cluster=None, site="rush", pilot=False, source="manual",
                           actor=MANAGER, reason="t"), "peg"),
        (_request("C2", "mayo", "low"), "site"),
        (_request("C3", "rush", "severe"), "peg"),
    ]:
        with pytest.raises(InvalidInput) as err, unit_of_work(migrated) as session:
            allocate(session, mini, req)
        assert err.value.field == field
    assert allocation_rows(migrated) == []
