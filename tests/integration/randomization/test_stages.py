"""Later stages (SMART, pcst-smart) in the service, on SQLite and PostgreSQL: exactly one
stage allocation per participant who reached the stage, from the stage stratum of their
outcome and first-stage arm, in slot order, under concurrency and redelivery; none for the
withdrawn or anyone without a first-stage allocation; an unscorable value needs review;
the option never leaves the service in clear (bus, blinded REST, audit chain)."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.core import audit
from services.core.audit import AuditEntry
from services.core.db import unit_of_work
from services.core.events import Allocated, FormSaved, StageAllocated, StageNeedsReview
from services.core.outbox import OutboxMessage
from services.core.protocol import TrialProtocol, load_protocol
from services.randomization import lists, repository, stages
from services.randomization.app import SPEC
from services.randomization.domain.stages import classify
from services.randomization.keys import ListKey
from services.randomization.lists import UnsealedList
from services.randomization.models import ParkedStage, StageAllocationRow
from services.randomization.service import (
    Actor,
    AllocationRace,
    AllocationRequest,
    Context,
    allocate,
    disclose,
)
from tailor_cli.natsd import NatsServer
from tests.support.harness import running_service
from tests.support.sealed import form_saved_for, keyring, recipient

from .support import STATISTICIAN, Tap, opened_slots, publish, sealed_list, sealed_list_direct

PCST = Path("protocols/pcst-smart.yaml").resolve()
MANAGER = Actor("sm", "study_manager")
BASELINE = ("screening", "consent", "demographics", "baseline_measures")
OPTIONS = {"responders": {"maintenance", "no_dose"},
           "non_responders": {"increased", "maintenance"}}


@pytest.fixture(scope="module")
def pcst() -> TrialProtocol:
    return load_protocol(PCST)


@pytest.fixture
def smart(list_key: ListKey, pcst: TrialProtocol) -> Context:
    return Context(key=list_key, protocol=pcst, seal_to_gateway=recipient("gateway"))


def _first_stage(engine: Engine, ctx: Context, records: list[str], baseline: dict[str, str]) -> None:
    for record in records:
        with unit_of_work(engine) as session:
            allocate(session, ctx, AllocationRequest(
                record=record, cluster=None, site=None, pilot=False, source="manual",
                actor=MANAGER, reason="test", levels={}))
            stages.record_baseline(session, record=record, values={"peg_pain": baseline[record]},
                                   actor=MANAGER)


def _reach(engine: Engine, ctx: Context, record: str, value: str | None) -> stages.StageResult:
    for _ in range(8):
        try:
            with unit_of_work(engine) as session:
                return stages.reach_stage(session, ctx, stages.StageRequest(
                    record=record, stage="s2", value=value, source="event",
                    actor=Actor("event:gateway", "system")))
        except AllocationRace:  # the concurrent winner committed first: ask again
            continue
    raise AssertionError(f"{record} never decided")


def _rows(engine: Engine) -> list[StageAllocationRow]:
    with Session(engine) as session:
        return list(session.exec(select(StageAllocationRow)
                                 .order_by(col(StageAllocationRow.stage_number))))


def test_concurrent_stage_decisions_allocate_each_participant_once_in_slot_order(
        migrated: Engine, smart: Context) -> None:
    list_id = sealed_list_direct(migrated, smart, 60)
    rng = random.Random(27)
    records = [f"S{i:03d}" for i in range(48)]
    baseline = {r: str(rng.randint(3, 10)) for r in records}
    value = {r: str(rng.randint(0, 10)) for r in records}
    value["S000"], baseline["S000"] = "7", "10"  # exactly 30%: a responder
    _first_stage(migrated, smart, records, baseline)
    jobs = records + rng.sample(records, 20) + rng.sample(records, 10)  # redelivered at once
    rng.shuffle(jobs)
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda r: (r, _reach(migrated, smart, r, value[r])), jobs))
    assert {res.status for _, res in results} <= {"allocated", "existing"}
    assert sum(1 for _, res in results if res.status == "allocated") == len(records)
    rows = _rows(migrated)
    assert sorted(r.record for r in rows) == records  # one each
    numbers = sorted(r.stage_number for r in rows)
    assert numbers == [f"PCST-S2-{n:04d}" for n in range(1, 49)]  # no gap, no double
    with Session(migrated) as session:
        first = {r.record: disclose(smart, r).arm
                 for r in repository.allocations(session) if r.record in records}
    detail = {r.record: stages.disclose_stage(smart, r) for r in rows}
    rule = smart.protocol.randomization.stages[0].rule
    for record, d in detail.items():
        assert d.outcome == classify(rule, value[record], baseline[record])
        assert d.option in OPTIONS[d.outcome]
        assert d.first_arm == first[record]
        assert d.stratum == f"s2:{d.outcome}:{d.first_arm}"
    assert detail["S000"].outcome == "responders"
    # Each stage stratum's used slots are 1..n, taken in stage-number order, and each holds
    # the option the participant got, tagged per stage (never the first stage's tag).
    slots = opened_slots(migrated, smart.key, list_id)
    by_stratum: dict[str, list[int]] = {}
    for row in rows:
        d = detail[row.record]
        slot, used_by = slots[(d.stratum, d.seq)]
        assert slot.module == d.option
        assert used_by == smart.key.stage_participant_tag(list_id, "s2", row.record)
        by_stratum.setdefault(d.stratum, []).append(d.seq)
    for seqs in by_stratum.values():
        assert seqs == list(range(1, len(seqs) + 1))
    with Session(migrated) as session:
        sent = session.exec(select(OutboxMessage).where(
            col(OutboxMessage.subject) == StageAllocated.subject)).all()
        assert len(sent) == len(records)  # one event each, whatever the redeliveries
        for message in sent:
            body = json.loads(message.envelope)
            assert set(body["data"]) == {"record", "stage", "stage_number", "allocated_at",
                                         "sealed"}
            opened = keyring("gateway").open_json(body["data"]["sealed"],
                                                  subject=StageAllocated.subject,
                                                  record=body["data"]["record"])
            assert opened == {"option": detail[body["data"]["record"]].option}
        created = session.exec(select(AuditEntry).where(
            col(AuditEntry.action) == "stage_allocation.created")).all()
        assert len(created) == len(records)
        for entry in created:  # a digest of the detail, never the option or the outcome
            text = json.dumps(entry.after)
            assert not any(o in text for o in ("maintenance", "no_dose", "increased",
                                               "responders"))
    with unit_of_work(migrated) as session:
        assert audit.verify(session).ok
    # At closure the unsealed list, stage strata included, verifies against its commitment.
    with unit_of_work(migrated) as session:
        lists.close(session, list_id=list_id, reason="end of recruitment", actor=MANAGER)
    together = ("statistician", "monitor")
    with unit_of_work(migrated) as session:
        lists.unseal(session, smart, list_id=list_id, actor=STATISTICIAN, reason="closure",
                     together=together)
    with unit_of_work(migrated) as session:
        opened = lists.unseal(session, smart, list_id=list_id, actor=Actor("mon-1", "monitor"),
                              reason="closure", together=together)
    assert isinstance(opened, UnsealedList) and opened.verified, opened


def test_who_did_not_reach_the_stage_gets_nothing_and_an_unscorable_value_needs_review(
        migrated: Engine, smart: Context) -> None:
    sealed_list_direct(migrated, smart, 10)
    _first_stage(migrated, smart, ["W1", "R1", "Z1"], {"W1": "8", "R1": "8", "Z1": "0"})
    with unit_of_work(migrated) as session:
        stages.record_withdrawal(session, record="W1", withdrawn=True, actor=MANAGER,
                                 correlation_id=None)
    assert _reach(migrated, smart, "W1", "2").detail == "withdrawn"
    assert _reach(migrated, smart, "NOPE", "2").detail == "no first-stage allocation"
    blank = _reach(migrated, smart, "R1", "")
    assert (blank.status, blank.field) == ("needs_review", "pegf_pain")
    zero = _reach(migrated, smart, "Z1", "0")
    assert (zero.status, zero.field) == ("needs_review", "peg_pain")
    assert _rows(migrated) == []
    with Session(migrated) as session:
        reviews = session.exec(select(OutboxMessage).where(
            col(OutboxMessage.subject) == StageNeedsReview.subject)).all()
        assert sorted(json.loads(m.envelope)["data"]["field"] for m in reviews) == [
            "peg_pain", "pegf_pain"]
        actions = [e.action for e in session.exec(select(AuditEntry)).all()]
        assert actions.count("stage.not_reached") == 2
        assert actions.count("stage.needs_review") == 2
        assert actions.count("stage.baseline_recorded") == 3
        assert actions.count("stage.participant_withdrawn") == 1
    # The corrected value is decided; asking again changes nothing.
    assert _reach(migrated, smart, "R1", "5").status == "allocated"
    assert _reach(migrated, smart, "R1", "5").status == "existing"
    assert [r.record for r in _rows(migrated)] == ["R1"]


def _baseline(record: str, pain: str) -> FormSaved:
    fields = {"cons_given": "1", "scr_eligible": "1", "wd_withdrawn": "0", "peg_pain": pain,
              **{f"{form}_complete": "2" for form in BASELINE}}
    return FormSaved(project_id=105, record=record, event="t0_baseline_arm_1",
                     instrument="baseline_measures", complete_status=2, fields=fields,
                     trigger="det")


def _week8(record: str, pain: str, *, withdrawn: str = "0", complete: str = "2") -> FormSaved:
    fields = {"pegf_pain": pain, "peg_followup_complete": complete, "wd_withdrawn": withdrawn}
    return FormSaved(project_id=105, record=record, event="week_8_arm_1",
                     instrument="peg_followup", complete_status=int(complete), fields=fields,
                     trigger="det")


async def test_stage_saves_on_the_bus_are_decided_once_and_stay_blinded(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=PCST) as svc:
        await sealed_list(svc, 20)
        records = [f"B{i:02d}" for i in range(10)]
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", _baseline(r, "8"))
                                           for r in [*records, "WD", "M1"]])
            await tap.read(at_least=12)
        stage_saves = [form_saved_for("randomization", _week8(r, str(i % 9)))
                       for i, r in enumerate(records)]
        async with Tap(svc.kernel.bus, StageAllocated.subject) as tap:
            await publish(svc.kernel.bus, [
                form_saved_for("randomization", _week8("B00", "3", complete="1")),  # not yet
                form_saved_for("randomization", _week8("WD", "2", withdrawn="1")),
                form_saved_for("randomization", _week8("NEVER", "2")),
                *stage_saves, *stage_saves[:4]])  # the last four redelivered
            events = await tap.read(at_least=10)
        assert sorted(e.record for e in events) == records  # once each, nobody else
        for e in events:
            assert set(e.data) == {"record", "stage", "stage_number", "allocated_at", "sealed"}
        ctx = svc.deps.context
        with Session(svc.kernel.engine) as session:
            rows = {r.record: r for r in session.exec(select(StageAllocationRow)).all()}
        assert sorted(rows) == records
        for e in events:
            option = keyring("gateway").open_json(e.data["sealed"], subject=StageAllocated.subject,
                                                  record=e.record)["option"]
            assert option == stages.disclose_stage(ctx, rows[e.record]).option
        # Blinded roles read the stage number and time, never the option; unblinded read it.
        blinded = await svc.client.get("/v1/allocations/B01/stages",
                                       headers=svc.as_role("coordinator"))
        assert blinded.status_code == 200, blinded.text
        assert set(blinded.json()[0]) == {"record", "stage", "stage_number", "allocated_at"}
        unblinded = await svc.client.get("/v1/allocations/B01/stages",
                                         headers=svc.as_role("study_manager"))
        assert unblinded.json()[0]["option"] == stages.disclose_stage(ctx, rows["B01"]).option
        every = await svc.client.get("/v1/stages/allocations", headers=svc.as_role("study_manager"))
        assert sorted(a["record"] for a in every.json()) == records
        refused = await svc.client.get("/v1/stages/allocations", headers=svc.as_role("coordinator"))
        assert refused.status_code == 403
        emergency = await svc.client.post("/v1/allocations/B02/emergency-unblinding",
                                          json={"reason": "severe reaction"},
                                          headers=svc.as_role("study_manager"))
        assert emergency.status_code == 200, emergency.text
        assert [s["option"] for s in emergency.json()["stages"]] == [
            stages.disclose_stage(ctx, rows["B02"]).option]
        manual = await svc.client.post("/v1/stages/allocations", headers=svc.as_role(
            "study_manager"), json={"record": "B03", "stage": "s2", "value": "1",
                                    "reason": "REDCap down"})
        assert manual.status_code == 200 and manual.json()["status"] == "existing"  # once
        missing = await svc.client.post("/v1/stages/allocations", headers=svc.as_role(
            "study_manager"), json={"record": "WD", "stage": "s2", "value": "",
                                    "reason": "REDCap down"})
        assert missing.json()["status"] == "not_reached"  # withdrawn
        unknown = await svc.client.post("/v1/stages/allocations", headers=svc.as_role(
            "study_manager"), json={"record": "B03", "stage": "s9", "reason": "REDCap down"})
        assert unknown.status_code == 404 and unknown.json()["field"] == "stage"
        assert (await svc.client.post("/v1/stages/allocations", headers=svc.as_role(
            "coordinator"), json={"record": "B03", "stage": "s2", "reason": "x"})
                ).status_code == 403
        balance = await svc.client.get("/v1/stages/balance", headers=svc.as_role("dsmb"))
        assert sum(b["allocated"] for b in balance.json()) == 10
        assert (await svc.client.get("/v1/stages/balance", headers=svc.as_role("monitor"))
                ).status_code == 403
        made = await svc.client.post("/v1/stages/allocations", headers=svc.as_role(
            "study_manager"), json={"record": "M1", "stage": "s2", "value": "6",
                                    "reason": "REDCap down at the week-8 visit"})
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["status"] == "allocated"  # 6 of 8 is a 25% fall: no response
        assert body["allocation"]["outcome"] == "non_responders"
        assert body["allocation"]["option"] in OPTIONS["non_responders"]
        assert body["allocation"]["source"] == "manual"


async def test_a_stage_decision_without_a_sealed_list_waits_and_is_made_at_the_next_seal(
        tmp_path: Path, nats_server: NatsServer, database_url: str) -> None:
    async with running_service(SPEC, home=tmp_path, nats_url=nats_server.url,
                               database_url=database_url, protocol_file=PCST) as svc:
        first = await sealed_list(svc, 10)
        async with Tap(svc.kernel.bus, Allocated.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", _baseline("P1", "9"))])
            await tap.read(at_least=1)
        closed = await svc.client.post(f"/v1/lists/{first}/close", json={"reason": "interim"},
                                       headers=svc.as_role("study_manager"))
        assert closed.status_code == 200, closed.text
        async with Tap(svc.kernel.bus, StageAllocated.subject) as tap:
            await publish(svc.kernel.bus, [form_saved_for("randomization", _week8("P1", "2"))])
            await tap.read(at_least=0, timeout=3)
            with Session(svc.kernel.engine) as session:
                parked = session.exec(select(ParkedStage)).all()
                assert [(p.record, p.stage) for p in parked] == [("P1", "s2")]
                assert b"pegf" not in parked[0].sealed_request  # the request is sealed
            assert _rows(svc.kernel.engine) == []
            await sealed_list(svc, 10)  # sealing re-drives the waiting decision
            [event] = await tap.read(at_least=1)
        assert event.record == "P1"
        [row] = _rows(svc.kernel.engine)
        d = stages.disclose_stage(svc.deps.context, row)
        assert d.outcome == "responders" and d.option in OPTIONS["responders"]
        with Session(svc.kernel.engine) as session:
            assert session.exec(select(ParkedStage)).all() == []
            actions = [e.action for e in session.exec(select(AuditEntry)).all()]
        assert actions.count("stage.parked") == 1 and actions.count("stage.unparked") == 1
