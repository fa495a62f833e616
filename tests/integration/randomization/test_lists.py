"""Lists through the API: generate, seal, commitment, import validation, extension, unsealing."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, col, select

from services.core import audit
from services.core.protocol import TrialProtocol
from services.randomization import handlers
from services.randomization.domain import (
    ListCommitment,
    OpenedSlot,
    SealedSlot,
    SealError,
    Slot,
    design_from_protocol,
    generate_list,
    seal_batch,
    unseal_slot,
    verify_list,
)
from services.randomization.keys import ListKey
from services.randomization.models import (
    AllocationRow,
    RandomizationList,
    SealedSlotRow,
    StratumCounter,
)
from services.randomization.service import design_from_snapshot
from tests.support.harness import RunningService

from .support import Tap, sealed_list

STAT = "statistician"


def _audit(svc: RunningService, action: str) -> list[audit.AuditEntry]:
    with Session(svc.kernel.engine) as session:
        return list(session.exec(select(audit.AuditEntry).where(col(audit.AuditEntry.action) == action)))


async def test_generated_list_is_sealed_and_its_commitment_exported(svc: RunningService) -> None:
    made = await svc.client.post("/v1/lists", json={}, headers=svc.as_role(STAT))
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["status"] == "generated" and body["source"] == "generated"
    assert [s["stratum"] for s in body["strata"]] == ["AC", "DYS", "ID"]
    assert body["slots"] >= 3 * 105 and body["used"] == 0 and body["free"] == body["slots"]
    assert all(set(s) == {"stratum", "running_low"} for s in body["strata"])  # no counts
    list_id = body["id"]

    early = await svc.client.get(f"/v1/lists/{list_id}/commitment", headers=svc.as_role("monitor"))
    assert early.status_code == 409  # a draft has no published commitment

    sealed = await svc.client.post(f"/v1/lists/{list_id}/seal", headers=svc.as_role(STAT))
    assert sealed.status_code == 200, sealed.text
    exported = await svc.client.get(f"/v1/lists/{list_id}/commitment", headers=svc.as_role("monitor"))
    assert exported.status_code == 200
    statement, digest = exported.json()["statement"], exported.json()["digest"]
    assert ListCommitment.from_statement(statement).digest() == digest == sealed.json()["digest"]
    assert sum(b["size"] for b in statement["batches"]) == body["slots"]

    [entry] = _audit(svc, "list.sealed")
    assert json.loads(entry.after)["commitment_digest"] == digest
    verify = await svc.client.get("/v1/audit/verify", headers=svc.as_role("monitor"))
    assert verify.json()["ok"] is True

    again = await svc.client.post(f"/v1/lists/{list_id}/seal", headers=svc.as_role(STAT))
    assert again.status_code == 409
    other = (await svc.client.post("/v1/lists", json={"slots_per_stratum": 8},
                                   headers=svc.as_role(STAT))).json()["id"]
    second = await svc.client.post(f"/v1/lists/{other}/seal", headers=svc.as_role(STAT))
    assert second.status_code == 409 and "one list allocates" in second.json()["detail"]


async def test_monitor_sees_lists_without_per_stratum_counts(sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    await sealed_list(svc, 8)
    stat = (await svc.client.get("/v1/lists", headers=svc.as_role(STAT))).json()
    monitor = (await svc.client.get("/v1/lists", headers=svc.as_role("monitor"))).json()
    assert "strata" in stat[0] and "strata" not in monitor[0]
    assert (await svc.client.get("/v1/lists", headers=svc.as_role("coordinator"))).status_code == 403
    assert (await svc.client.post("/v1/lists", json={}, headers=svc.as_role("monitor"))).status_code == 403


async def test_sealed_slots_are_unreadable_in_the_database_without_the_key(
        sqlite_svc: RunningService, list_key: ListKey) -> None:
    svc = sqlite_svc
    list_id = await sealed_list(svc, 12)
    await svc.client.post("/v1/allocations", headers=svc.as_role("study_manager"),
                          json={"record": "U1", "cluster": "DYS", "reason": "bus down"})
    protocol = svc.kernel.protocol
    # As the plaintext encodes them (JSON strings): long enough not to occur by chance.
    words = [json.dumps(w).encode() for w in (*protocol.module_keys, *(a.key for a in protocol.arms),
                                              *(c.key for c in protocol.clusters))]
    with Session(svc.kernel.engine) as session:
        rows = session.exec(select(SealedSlotRow).where(col(SealedSlotRow.list_id) == list_id)).all()
        [allocation] = session.exec(select(AllocationRow)).all()
        counters = session.exec(select(StratumCounter)).all()
    assert rows and all(not any(w in r.ciphertext for w in words) for r in rows)
    assert len({len(r.ciphertext) for r in rows}) == 1  # the length does not unblind either
    assert not any(w in allocation.sealed_detail for w in words)
    strata = {c.key for c in protocol.clusters}
    assert not strata & ({r.stratum_ref for r in rows} | {c.stratum_ref for c in counters})
    assert [r.used_by for r in rows if r.used_by] == [list_key.participant_tag(list_id, "U1")]
    ref = list_key.stratum_ref(list_id, "DYS")
    first = next(r for r in rows if (r.stratum_ref, r.seq) == (ref, 1))
    sealed = SealedSlot("DYS", 1, first.nonce, first.ciphertext, first.leaf)
    assert unseal_slot(sealed, key=list_key.material, list_id=list_id).slot.module == allocation.module
    with pytest.raises(SealError):
        unseal_slot(sealed, key=bytes(32), list_id=list_id)


def _csv(slots: list[Slot]) -> str:
    lines = ["stratum,seq,block,block_length,module,arm"]
    lines += [",".join(map(str, s)) for s in slots]
    return "\n".join(lines) + "\n"


async def test_import_reports_every_defect_with_row_and_column(sqlite_svc: RunningService,
                                                                protocol: TrialProtocol) -> None:
    svc = sqlite_svc
    design = design_from_protocol(protocol)
    slots = generate_list(design, b"\x02" * 32, 12)
    rows = {(s.stratum, s.seq): i + 2 for i, s in enumerate(slots)}  # header is row 1
    defects = list(slots)
    i = rows[("AC", 2)] - 2
    defects[i] = defects[i]._replace(module="YOGA")  # unknown module
    i = rows[("AC", 4)] - 2
    wrong_arm = next(a for a in design.arms if a != defects[i].arm)
    defects[i] = defects[i]._replace(arm=wrong_arm)  # arm does not follow the module
    i = rows[("ID", 1)] - 2
    other = next(m for m in design.modules if m != defects[i].module)
    defects[i] = defects[i]._replace(module=other, arm=design.stratum("ID").arm_of(other))  # ratio
    del defects[rows[("DYS", 3)] - 2]  # gap: the rows after it keep their numbers only before

    response = await svc.client.post("/v1/lists/import", content=_csv(defects).encode(),
                                     headers={**svc.as_role(STAT), "content-type": "text/csv"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    found = {(e["row"], e["column"]) for e in errors}
    assert (rows[("AC", 2)], "module") in found
    assert (rows[("AC", 4)], "arm") in found
    assert any(e["column"] == "seq" and "DYS: seq 3 missing" in e["message"] for e in errors)
    assert any(e["column"] == "module" and "stratum ID block 1" in e["message"] for e in errors)
    assert len(errors) == 4
    assert (await svc.client.get("/v1/lists", headers=svc.as_role(STAT))).json() == []

    bad_bytes = await svc.client.post("/v1/lists/import", content=b"\xff\xfe\x00",
                                      headers=svc.as_role(STAT))
    assert bad_bytes.status_code == 422 and bad_bytes.json()["field"] == "body"

    good = await svc.client.post("/v1/lists/import", content=_csv(slots).encode(),
                                 headers={**svc.as_role(STAT), "content-type": "text/csv"})
    assert good.status_code == 201, good.text
    assert good.json()["source"] == "imported"
    assert good.json()["slots"] == len(slots)


async def _allocate(svc: RunningService, record: str, cluster: str) -> dict:
    response = await svc.client.post("/v1/allocations", headers=svc.as_role("study_manager"),
                                     json={"record": record, "cluster": cluster,
                                           "reason": "REDCap down during the test"})
    assert response.status_code == 201, response.text
    return response.json()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not exported")


async def test_the_statistician_sees_totals_that_never_tell_a_stratum(
        sqlite_svc: RunningService) -> None:
    """Polling the lists and the metrics across allocations shows one more slot used, the
    same whichever stratum (= cluster) the participant went to."""
    svc = sqlite_svc
    await sealed_list(svc, 24)
    views, gauges = [], []
    for i, cluster in enumerate(["DYS", "ID", "AC", "DYS"]):
        await _allocate(svc, f"T{i}", cluster)
        handlers.check_slots(svc.deps)
        view = (await svc.client.get("/v1/lists", headers=svc.as_role(STAT))).json()[0]
        views.append({k: v for k, v in view.items() if k not in ("used", "free")})
        metrics = (await svc.client.get("/metrics")).text
        gauges.append([line for line in metrics.splitlines()
                       if line.startswith("tailor_randomization_") and "_created" not in line
                       and not line.startswith("#")])
        assert view["used"] == i + 1
        assert "fewest" not in metrics
    assert all(v == views[0] for v in views)  # nothing but the totals moved
    totals = [_metric("\n".join(g), "tailor_randomization_free_slots", statistic="total")
              for g in gauges]
    assert totals == [totals[0] - i for i in range(4)]


async def test_the_low_slot_alarm_follows_a_batch_never_one_allocation(
        sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    async with Tap(svc.kernel.bus, "trial.v1.randomization.stratum_running_low") as tap:
        await _batched_alarm_then_extension(svc, tap)


async def _batched_alarm_then_extension(svc: RunningService, tap: Tap) -> None:
    design = svc.kernel.protocol.randomization
    threshold, batch = design.low_slots_threshold, design.low_slots_alarm_batch
    list_id = await _sealed_at_threshold(svc, threshold)  # one more in a stratum: it runs low
    first = (await svc.client.get(f"/v1/lists/{list_id}/commitment", headers=svc.as_role(STAT))).json()
    await _allocate(svc, "D0", "DYS")  # DYS crosses below the threshold right here
    for i in range(1, batch):
        handlers.check_slots(svc.deps)  # the watcher's periodic look, run now
        assert _audit(svc, "list.stratum_running_low") == []  # not tied to D0, nor any one
        listed = (await svc.client.get("/v1/lists", headers=svc.as_role(STAT))).json()[0]
        assert not any(s["running_low"] for s in listed["strata"])
        await _allocate(svc, f"A{i}", "AC" if i % 2 else "ID")
    handlers.check_slots(svc.deps)  # a whole batch since the last look: now it looks
    [entry] = _audit(svc, "list.stratum_running_low")
    after = json.loads(entry.after)
    assert after["allocations_in_batch"] >= batch and entry.record is None
    [alarm] = await tap.read(at_least=1)
    assert set(alarm.data) == {"list_id", "strata_running_low", "fewest_free_slots", "threshold", "at"}
    assert alarm.data["strata_running_low"] == 3 and alarm.record is None  # every stratum is low
    assert alarm.data["fewest_free_slots"] < threshold
    metrics = (await svc.client.get("/metrics")).text
    assert _metric(metrics, "tailor_randomization_strata_running_low", service="randomization") == 3
    listed = (await svc.client.get("/v1/lists", headers=svc.as_role(STAT))).json()[0]["strata"]
    assert [s["stratum"] for s in listed if s["running_low"]] == ["AC", "DYS", "ID"]

    refused = await svc.client.post(f"/v1/lists/{list_id}/extend", headers=svc.as_role(STAT),
                                     json={"stratum": "XYZ", "slots": 12})
    assert refused.status_code == 422 and refused.json()["field"] == "stratum"
    extended = await svc.client.post(f"/v1/lists/{list_id}/extend", headers=svc.as_role(STAT),
                                     json={"stratum": "DYS", "slots": 24})
    assert extended.status_code == 200, extended.text
    statement = extended.json()["statement"]
    assert statement["batches"][0] == first["statement"]["batches"][0]  # batch 1 unchanged
    [batch2] = statement["batches"][1:]
    assert batch2["ranges"] == [{"stratum": "DYS", "first_seq": threshold + 1,
                                 "last_seq": batch2["ranges"][0]["last_seq"]}]
    assert _audit(svc, "list.extended")
    listed = (await svc.client.get("/v1/lists", headers=svc.as_role(STAT))).json()[0]["strata"]
    assert [s["stratum"] for s in listed if s["running_low"]] == ["AC", "ID"]
    for i in range(1, threshold + 1):  # use up batch 1 of DYS, then the first new slot
        last = await _allocate(svc, f"D{i}", "DYS")
    assert last["slot"] == {"seq": threshold + 1, "batch": 2}


async def test_unsealing_needs_the_statistician_and_a_monitor(sqlite_svc: RunningService) -> None:
    svc = sqlite_svc
    list_id = await sealed_list(svc, 12)
    for i in range(5):
        await _allocate(svc, f"P{i}", ["DYS", "ID", "AC"][i % 3])
    exported = (await svc.client.get(f"/v1/lists/{list_id}/commitment",
                                     headers=svc.as_role("monitor"))).json()
    url = f"/v1/lists/{list_id}/unseal"
    why = {"reason": "trial closed: final analysis"}
    assert (await svc.client.post(url, json=why,
                                  headers=svc.as_role("coordinator"))).status_code == 403
    early = await svc.client.post(url, json=why, headers=svc.as_role(STAT, "stat-1"))
    assert early.status_code == 409 and "close allocation" in early.json()["detail"]
    await _close(svc, list_id)

    no_reason = await svc.client.post(url, json={}, headers=svc.as_role(STAT, "stat-1"))
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    asked = await svc.client.post(url, json=why, headers=svc.as_role(STAT, "stat-1"))
    assert asked.status_code == 202
    assert asked.json()["awaiting_roles"] == ["monitor"] and "slots" not in asked.json()
    alone = await svc.client.post(url, json=why, headers=svc.as_role(STAT, "stat-2"))
    assert alone.status_code == 403  # a second statistician is not the other role
    [requested] = _audit(svc, "list.unseal_requested")
    assert requested.reason == why["reason"] and not _audit(svc, "list.unsealed")

    opened = await svc.client.post(url, json={"reason": "confirmed for the trials unit"},
                                   headers=svc.as_role("monitor", "mon-1"))
    assert opened.status_code == 200, opened.text
    done = opened.json()
    assert done == {"list_id": list_id, "status": "unsealed", "verified": True, "problems": 0,
                    "commitment_digest": exported["digest"]}  # no seed, no slot, no arm
    for role in (STAT, "monitor", "coordinator"):  # blinded roles never read the list
        refused = await svc.client.get(f"/v1/lists/{list_id}/unsealed", headers=svc.as_role(role))
        assert refused.status_code == 403, role
    read = await svc.client.get(f"/v1/lists/{list_id}/unsealed",
                                headers=svc.as_role("study_manager", "sm-1"))
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["verified"] is True and body["problems"] == []
    assert body["commitment_digest"] == exported["digest"]
    slots = [Slot(s["stratum"], s["seq"], s["block"], s["block_length"], s["module"], s["arm"])
             for s in body["slots"]]
    verify_list([OpenedSlot(slot, bytes.fromhex(s["salt"]))
                 for slot, s in zip(slots, body["slots"], strict=True)],
                ListCommitment.from_statement(exported["statement"]))  # offline, by anyone
    assert sum(s["used"] for s in body["slots"]) == 5
    with Session(svc.kernel.engine) as session:
        design = design_from_snapshot(json.loads(session.get(RandomizationList, list_id).design))
    assert generate_list(design, bytes.fromhex(body["seed"]), 12) == slots  # the seed rebuilds it
    [entry] = _audit(svc, "list.unsealed")
    assert entry.role == "monitor" and json.loads(entry.after)["requested_role"] == STAT
    assert entry.reason == "confirmed for the trials unit"
    assert json.loads(entry.after)["request_reason"] == why["reason"]
    assert [e.actor for e in _audit(svc, "list.unsealed_read")] == ["sm-1"]

    closed = await svc.client.post("/v1/allocations", headers=svc.as_role("study_manager"),
                                   json={"record": "late", "cluster": "AC", "reason": "after closure"})
    assert closed.status_code == 409


async def test_commitment_detects_a_changed_slot(sqlite_svc: RunningService, list_key: ListKey) -> None:
    """Someone with the key re-seals another module into a free slot: the slot still
    opens, but the unsealed list no longer matches the commitment."""
    svc = sqlite_svc
    list_id = await sealed_list(svc, 12)
    ref = list_key.stratum_ref(list_id, "AC")
    with Session(svc.kernel.engine) as session:
        row = session.get(SealedSlotRow, (list_id, ref, 5))
        opened = unseal_slot(SealedSlot("AC", 5, row.nonce, row.ciphertext, row.leaf),
                             key=list_key.material, list_id=list_id).slot
        design = design_from_snapshot(json.loads(session.get(RandomizationList, list_id).design))
        module = next(m for m in design.modules if m != opened.module)
        forged = opened._replace(module=module, arm=design.stratum("AC").arm_of(module))
        [resealed] = seal_batch([forged], key=list_key.material, list_id=list_id).slots
        row.nonce, row.ciphertext, row.leaf = resealed.nonce, resealed.ciphertext, resealed.leaf
        session.add(row)
        session.commit()
    await _close(svc, list_id)
    why = {"reason": "final analysis"}
    await svc.client.post(f"/v1/lists/{list_id}/unseal", json=why, headers=svc.as_role(STAT, "s-1"))
    done = (await svc.client.post(f"/v1/lists/{list_id}/unseal", json=why,
                                  headers=svc.as_role("monitor", "mon-1"))).json()
    assert done["verified"] is False and done["problems"] >= 1
    body = (await svc.client.get(f"/v1/lists/{list_id}/unsealed",
                                 headers=svc.as_role("dsmb", "dsmb-1"))).json()
    assert body["verified"] is False
    assert any("batch 1" in p and "root" in p for p in body["problems"])
    assert json.loads(_audit(svc, "list.unsealed")[0].after)["verified"] is False


async def _close(svc: RunningService, list_id: str) -> None:
    url = f"/v1/lists/{list_id}/close"
    for role in (STAT, "monitor", "dsmb"):
        assert (await svc.client.post(url, json={"reason": "last participant in"},
                                      headers=svc.as_role(role))).status_code == 403, role
    missing = await svc.client.post(url, json={}, headers=svc.as_role("study_manager"))
    assert missing.status_code == 422
    closed = await svc.client.post(url, json={"reason": "recruitment complete (n=105)"},
                                   headers=svc.as_role("study_manager", "sm-1"))
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed" and closed.json()["closed_at"]
    [entry] = _audit(svc, "list.allocation_closed")
    assert entry.reason == "recruitment complete (n=105)" and entry.actor == "sm-1"
    again = await svc.client.post(url, json={"reason": "twice"},
                                  headers=svc.as_role("study_manager", "sm-1"))
    assert again.status_code == 409


async def _sealed_at_threshold(svc: RunningService, slots: int) -> str:
    """A list with exactly `slots` slots in every stratum (imported: a generated list rounds
    up to whole blocks at random), sealed."""
    design = design_from_snapshot({"randomization": svc.kernel.protocol.randomization.model_dump(
        mode="json"), "clusters": [c.model_dump(mode="json") for c in svc.kernel.protocol.clusters],
        "modules": list(svc.kernel.protocol.module_keys)})
    candidates = (generate_list(design, bytes([i]) * 32, slots) for i in range(256))
    made = next(c for c in candidates
                if {sum(1 for s in c if s.stratum == k) for k in design.stratum_keys} == {slots})
    imported = await svc.client.post("/v1/lists/import", content=_csv(made).encode(),
                                     headers={**svc.as_role(STAT), "content-type": "text/csv"})
    assert imported.status_code == 201, imported.text
    list_id = imported.json()["id"]
    sealed = await svc.client.post(f"/v1/lists/{list_id}/seal", headers=svc.as_role(STAT))
    assert sealed.status_code == 200, sealed.text
    return list_id
