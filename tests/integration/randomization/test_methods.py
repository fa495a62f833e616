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

from services.core import audit
from services.core.db import unit_of_work
from services.core.protocol import TrialProtocol, load_protocol
from services.randomization.domain.baseline import levels_of
from services.randomization.keys import ListKey
from services.randomization.service import (
    Actor,
    AllocationRace,
    AllocationRequest,
    Context,
    allocate,
)

from .support import (
    allocation_rows,
    check_blocks_balanced,
    check_minimization_reproducible,
    sealed_list_direct,
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


def _p4p(rng: random.Random) -> Fields:
    return {"scr_site": rng.choice(["1", "1", "2"])}


def _rush(rng: random.Random) -> Fields:
    return {"scr_site": rng.choice(["1", "2"]), "scr_pain_interference": str(rng.randint(3, 10))}


METHODS = {
    "permuted_blocks": Method("partners4pain.yaml", _p4p, check_blocks_balanced, 100),
    "minimization": Method("rush-mechanisms.yaml", _rush, check_minimization_reproducible),
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
