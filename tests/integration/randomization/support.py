"""Helpers of the randomization tests: lists, events on the bus, the database seen with the key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.core.bus import Bus
from services.core.db import unit_of_work
from services.core.events import ClusterAssigned, Envelope
from services.randomization import lists
from services.randomization.domain import SealedSlot, Slot, unseal_slot
from services.randomization.domain.minimization import replay
from services.randomization.keys import ListKey
from services.randomization.lists import UnsealedList
from services.randomization.models import AllocationRow, RandomizationList, SealedSlotRow
from services.randomization.service import Actor, Context, design_from_snapshot, disclose
from tests.support.harness import RunningService, provisioner_bus
from tests.support.sealed import cluster_assigned_event

STATISTICIAN = Actor("stat-1", "statistician")


async def sealed_list(svc: RunningService, slots_per_stratum: int | None = None) -> str:
    """Generate and seal a list through the API; its id."""
    body = {} if slots_per_stratum is None else {"slots_per_stratum": slots_per_stratum}
    made = await svc.client.post("/v1/lists", json=body, headers=svc.as_role("statistician"))
    assert made.status_code == 201, made.text
    list_id = made.json()["id"]
    sealed = await svc.client.post(f"/v1/lists/{list_id}/seal", headers=svc.as_role("statistician"))
    assert sealed.status_code == 200, sealed.text
    return list_id


def sealed_list_direct(engine: Engine, ctx: Context, slots_per_stratum: int) -> str:
    """The same through the use cases (no service running)."""
    with unit_of_work(engine) as session:
        lst = lists.generate(session, ctx, slots_per_stratum=slots_per_stratum, actor=STATISTICIAN)
    with unit_of_work(engine) as session:
        lists.seal(session, ctx, list_id=lst.id, actor=STATISTICIAN)
    return lst.id


def unseal_closed(engine: Engine, ctx: Context, list_id: str) -> UnsealedList:
    """Close the list and unseal it (a statistician and a monitor together)."""
    manager = Actor("sm", "study_manager")
    with unit_of_work(engine) as session:
        lists.close(session, list_id=list_id, reason="end of recruitment", actor=manager)
    together = ("statistician", "monitor")
    with unit_of_work(engine) as session:
        lists.unseal(session, ctx, list_id=list_id, actor=STATISTICIAN, reason="closure",
                     together=together)
    with unit_of_work(engine) as session:
        opened = lists.unseal(session, ctx, list_id=list_id, actor=Actor("mon-1", "monitor"),
                              reason="closure", together=together)
    assert isinstance(opened, UnsealedList)
    return opened


def cluster_assigned(record: str, cluster: str, *, pilot: bool = False,
                     event_id: str | None = None) -> Envelope:
    event = cluster_assigned_event(record, cluster, {cluster: 0.9}, model_version="test-model",
                                   pilot=pilot)
    return Envelope(subject=ClusterAssigned.subject, producer="allocation", record=record,
                    data=event.model_dump(mode="json"), **({"id": event_id} if event_id else {}))


async def publish(bus: Bus, envs: Iterable[Envelope], *, msg_id: str | None = None) -> None:
    """Publish as the events' producers would, through the provisioner's rights (the
    service's own user may publish only randomization's facts)."""
    probe = provisioner_bus(bus.url, "test-publisher")
    await probe.connect(attempts=20)
    try:
        for env in envs:
            await probe.publish(env.subject, env.model_dump_json().encode(), msg_id=msg_id or env.id)
    finally:
        await probe.close()


@dataclass
class Tap:
    """Everything published on `subject` since the tap was opened (a durable pull consumer)."""

    bus: Bus
    subject: str
    sub: object = None
    seen: list[Envelope] | None = None
    probe: Bus | None = None

    async def open(self) -> Tap:
        # A tap is a consumer of its own: only the provisioner may make one.
        self.probe = provisioner_bus(self.bus.url, "test-tap")
        await self.probe.connect(attempts=20)
        assert self.probe.js is not None
        self.sub = await self.probe.js.pull_subscribe(
            self.subject, durable=f"tap-{uuid.uuid4().hex[:8]}", stream="TRIAL")
        self.seen = []
        return self

    async def close(self) -> None:
        await self.sub.unsubscribe()  # type: ignore[attr-defined]
        await self.probe.close()

    async def __aenter__(self) -> Tap:
        return await self.open()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _fetch(self) -> int:
        try:
            msgs = await self.sub.fetch(100, timeout=0.3)  # type: ignore[attr-defined]
        except Exception:  # nothing within the timeout
            return 0
        for msg in msgs:
            self.seen.append(Envelope.model_validate_json(msg.data))  # type: ignore[union-attr]
            await msg.ack()
        return len(msgs)

    async def read(self, *, at_least: int = 0, timeout: float = 20.0) -> list[Envelope]:
        """Events so far, once at least `at_least` arrived and the subject went quiet."""
        assert self.seen is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self._fetch()
            if got == 0 and len(self.seen) >= at_least:
                return list(self.seen)
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.seen)} events on {self.subject}, {at_least} expected")


OpenedList = dict[tuple[str, int], tuple[Slot, str | None]]


def opened_slots(engine: Engine, key: ListKey, list_id: str) -> OpenedList:
    """Every slot of a list, opened with the key: (stratum, seq) → (slot, used_by tag)."""
    with Session(engine) as session:
        lst = session.get(RandomizationList, list_id)
        assert lst is not None
        design = design_from_snapshot(json.loads(lst.design))
        by_ref = {key.stratum_ref(list_id, s): s for s in design.stratum_keys}
        rows = session.exec(select(SealedSlotRow).where(col(SealedSlotRow.list_id) == list_id)).all()
        out = {}
        for r in rows:
            stratum = by_ref[r.stratum_ref]
            opened = unseal_slot(SealedSlot(stratum, r.seq, r.nonce, r.ciphertext, r.leaf),
                                 key=key.material, list_id=list_id)
            out[(stratum, r.seq)] = (opened.slot, r.used_by)
        return out


def allocation_rows(engine: Engine) -> list[AllocationRow]:
    with Session(engine) as session:
        return list(session.exec(select(AllocationRow).order_by(col(AllocationRow.allocation_number))))


def check_exactly_once_in_order(engine: Engine, ctx: Context, list_id: str,
                                records: Iterable[str]) -> dict[str, list[str]]:
    """Each record holds exactly one slot of its stratum; each stratum's used slots are
    1..n without gaps, taken in allocation-number order; the module is the slot's.
    Returns the records of each stratum in slot order."""
    records = set(records)
    rows = [r for r in allocation_rows(engine) if not r.pilot]
    assert {r.record for r in rows} == records
    slots = opened_slots(engine, ctx.key, list_id)
    by_stratum: dict[str, list[tuple[str, int, str]]] = {}
    for row in rows:  # allocation-number order
        d = disclose(ctx, row)
        assert d.seq is not None
        slot, used_by = slots[(d.stratum, d.seq)]
        assert used_by == ctx.key.participant_tag(list_id, row.record)
        assert slot.module == row.module and slot.arm == d.arm
        by_stratum.setdefault(d.stratum, []).append((row.allocation_number, d.seq, row.record))
    for stratum, taken in by_stratum.items():
        assert [seq for _, seq, _ in taken] == list(range(1, len(taken) + 1)), stratum
        used = sorted(seq for (s, seq), (_, tag) in slots.items() if s == stratum and tag)
        assert used == list(range(1, len(taken) + 1)), stratum
    tags = [tag for _, tag in slots.values() if tag]
    assert len(tags) == len(set(tags)) == len(rows)
    return {s: [rec for _, _, rec in taken] for s, taken in by_stratum.items()}


def check_blocks_balanced(engine: Engine, ctx: Context, list_id: str,
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


def check_minimization_reproducible(engine: Engine, ctx: Context, list_id: str,
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
