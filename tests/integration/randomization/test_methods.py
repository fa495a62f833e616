"""Every randomization method that runs, on SQLite and PostgreSQL: many participants of a
seed trial asked for at once from a thread pool (some twice at the same moment), each
allocated exactly once, with the method's own guarantees checked afterwards.

The requests are built as the baseline consumer builds them: from the participant's REDCap
screening values through the protocol file's factors (`levels_of`). A new method is one
more `Method` in `METHODS`: its protocol file, how its REDCap values are drawn and what
must hold of the allocations it made.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.core import audit
from services.core.db import unit_of_work
from services.core.protocol import TrialProtocol, load_protocol
from services.randomization.domain.baseline import levels_of
from services.randomization.domain.minimization import replay
from services.randomization.keys import ListKey
from services.randomization.models import RandomizationList
from services.randomization.service import (
    Actor,
    AllocationRace,
    AllocationRequest,
    Context,
    allocate,
    disclose,
)

from .support import (
    allocation_rows,
    check_exactly_once_in_order,
    opened_slots,
    sealed_list_direct,
    unseal_closed,
)

ROOT = Path(__file__).resolve().parents[3]
CONSUMER = Actor("event:gateway", "system")
PARTICIPANTS = 120
TWICE = 30  # participants whose allocation is asked for twice at the same time
Fields = dict[str, str]
Check = Callable[[Engine, Context, str, dict[str, dict[str, str]]], None]


@dataclass(frozen=True)
class Method:
    protocol: str  # file under protocols/
    draw: Callable[[random.Random], Fields]  # one participant's REDCap values
    check: Check  # the method's guarantees over every allocation made
    slots_per_stratum: int = 1


def _blocks_balanced(engine: Engine, ctx: Context, list_id: str,
                     levels: dict[str, dict[str, str]]) -> None:
    """Each stratum's slots are taken strictly in list order, none twice; the arms stay
    within half the longest block of 1:1 after every allocation and every whole block
    holds the ratio exactly; each participant sits in their own site's stratum."""
    by_stratum = check_exactly_once_in_order(engine, ctx, list_id, levels)
    slots = opened_slots(engine, ctx.key, list_id)
    half = max(ctx.protocol.randomization.block_lengths) // 2
    for stratum, records in by_stratum.items():
        assert all(levels[r]["site"] == stratum for r in records)
        taken = [slots[(stratum, seq)][0] for seq in range(1, len(records) + 1)]
        gap = 0
        blocks: dict[tuple[int, int], list[str]] = {}
        for slot in taken:
            gap += 1 if slot.arm == ctx.protocol.arms[0].key else -1
            assert abs(gap) <= half, stratum
            blocks.setdefault((slot.block, slot.block_length), []).append(slot.arm)
        whole = [arms for (_, length), arms in blocks.items() if len(arms) == length]
        assert len(whole) >= len(blocks) - 1  # only the last block may be unfinished
        assert all(arms.count(arms[0]) * 2 == len(arms) for arms in whole), stratum


def _minimization_reproducible(engine: Engine, ctx: Context, list_id: str,
                               levels: dict[str, dict[str, str]]) -> None:
    """One decision per participant numbered 1..n without a gap, each with the levels the
    consumer read; replayed from the unsealed seed in decision order, every arm and every
    imbalance score comes back."""
    rows = allocation_rows(engine)
    detail = {r.record: disclose(ctx, r) for r in rows}
    assert set(detail) == set(levels)
    order = sorted(detail, key=lambda rec: detail[rec].seq or 0)
    assert [detail[r].seq for r in order] == list(range(1, len(levels) + 1))
    assert all(detail[r].levels == levels[r] for r in order)
    opened = unseal_closed(engine, ctx, list_id)
    assert opened.verified, opened.problems
    with Session(engine) as session:
        lst = session.get(RandomizationList, list_id)
        assert lst is not None
        design = ctx.design_of(lst).minimization
    assert design is not None
    again = replay(design, opened.seed, [levels[r] for r in order])
    assert [d.arm for d in again] == [detail[r].arm for r in order]
    assert [d.scores for d in again] == [(detail[r].decision or {})["scores"] for r in order]


def _p4p(rng: random.Random) -> Fields:
    return {"scr_site": rng.choice(["1", "1", "2"])}


def _rush(rng: random.Random) -> Fields:
    return {"scr_site": rng.choice(["1", "2"]), "scr_pain_interference": str(rng.randint(3, 10))}


METHODS = {
    "permuted_blocks": Method("partners4pain.yaml", _p4p, _blocks_balanced, 100),
    "minimization": Method("rush-mechanisms.yaml", _rush, _minimization_reproducible),
}


@pytest.fixture(params=sorted(METHODS))
def method(request: pytest.FixtureRequest) -> Method:
    return METHODS[request.param]


def _request(protocol: TrialProtocol, record: str, fields: Fields) -> AllocationRequest:
    levels = levels_of(protocol, fields)  # as the baseline consumer reads them
    return AllocationRequest(record=record, cluster=None, site=levels.get("site"), pilot=False,
                             source="event", actor=CONSUMER, correlation_id=f"c-{record}",
                             levels=levels)


def _allocate(engine: Engine, ctx: Context, req: AllocationRequest) -> str:
    for _ in range(8):
        try:
            with unit_of_work(engine) as session:
                row, _created = allocate(session, ctx, req)
                return row.allocation_number
        except AllocationRace:  # a duplicate committed first: asking again returns it
            continue
    raise AssertionError(f"{req.record} never allocated")


def test_concurrent_requests_allocate_each_participant_once(migrated: Engine, list_key: ListKey,
                                                            method: Method) -> None:
    protocol = load_protocol(ROOT / "protocols" / method.protocol)
    ctx = Context(key=list_key, protocol=protocol)
    list_id = sealed_list_direct(migrated, ctx, method.slots_per_stratum)
    rng = random.Random(f"{method.protocol} concurrency")
    fields = {f"{n:03d}": method.draw(rng) for n in range(1, PARTICIPANTS + 1)}
    jobs = [*fields, *rng.sample(sorted(fields), TWICE)]
    rng.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=12) as pool:
        numbers = list(pool.map(
            lambda r: (r, _allocate(migrated, ctx, _request(protocol, r, fields[r]))), jobs))
    by_record: dict[str, set[str]] = {}
    for record, number in numbers:
        by_record.setdefault(record, set()).add(number)
    # Both askers of a duplicate got the same allocation; numbers run 1..n without a gap.
    assert all(len(n) == 1 for n in by_record.values()) and len(by_record) == PARTICIPANTS
    prefix = protocol.randomization.allocation_number_prefix
    assert sorted(n for ns in by_record.values() for n in ns) == [
        f"{prefix}{i:04d}" for i in range(1, PARTICIPANTS + 1)]
    assert sorted(r.record for r in allocation_rows(migrated)) == sorted(fields)
    method.check(migrated, ctx, list_id, {r: levels_of(protocol, f) for r, f in fields.items()})
    with unit_of_work(migrated) as session:
        assert audit.verify(session).ok
