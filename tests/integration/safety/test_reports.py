"""Blinded report (safety officer, monitor) and the DSMB's unblinded report, which learns
arms only from the randomization service at report time, with the DSMB member's token."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from datetime import timedelta

from services.core import audit
from services.core.digests import DigestKey
from services.core.events import Allocated
from services.core.roles import Role
from tests.support.harness import RunningService, eventually

from .safety_support import (
    AWARE,
    BusProbe,
    FakeRandomization,
    ae_body,
    assert_audit_verified_and_blind,
    audit_entries,
    envelope,
    headers_for,
    sae_body,
    sqlite_only,
)

ALLOCATED_AT = AWARE - timedelta(days=30)
PARTICIPANTS = {"PP-001": ("PERT", "personalized"), "PP-002": ("EDDT", "non_personalized"),
                "PP-003": ("EMDI", "non_personalized")}


async def _allocate(safety: RunningService, probe: BusProbe, fake: FakeRandomization) -> None:
    for n, (record, (module, arm)) in enumerate(PARTICIPANTS.items(), start=1):
        await probe.send(envelope(Allocated(record=record, allocation_number=f"A{n:03}",
                                            module=module, allocated_at=ALLOCATED_AT),
                                  record=record, producer="randomization"))
        fake.allocations.append({"record": record, "module": module, "arm": arm, "cluster": "DYS",
                                 "allocated_at": ALLOCATED_AT.isoformat(), "pilot": False})
    co = safety.as_role("coordinator")
    await safety.client.post("/v1/adverse-events", json=sae_body(participant="PP-001"), headers=co)
    await safety.client.post("/v1/adverse-events", json=ae_body(participant="PP-002"), headers=co)
    await safety.client.post("/v1/adverse-events", json=ae_body(participant="PP-003"), headers=co)

    async def blinded_sees_all() -> bool:
        report = await safety.client.get("/v1/reports/blinded", headers=safety.as_role("monitor"))
        return report.json()["overall"]["participants"] == 3
    await eventually(blinded_sees_all)


@sqlite_only
async def test_blinded_report_counts_by_module_without_arm(
        safety: RunningService, probe: BusProbe, fake_randomization: FakeRandomization) -> None:
    await _allocate(safety, probe, fake_randomization)
    for role in ("coordinator", "dsmb", "assessor", "ops"):
        response = await safety.client.get("/v1/reports/blinded", headers=safety.as_role(role))
        assert response.status_code == 403, role
    response = await safety.client.get("/v1/reports/blinded", headers=safety.as_role("safety_officer"))
    report = response.json()
    assert "personalized" not in response.text and '"arm"' not in response.text
    assert report["overall"]["counts"]["events"] == 3 and report["overall"]["counts"]["serious"] == 1
    assert report["by_module"]["PERT"]["counts"]["serious"] == 1
    assert report["by_module"]["EDDT"]["counts"]["events"] == 1
    assert report["overall"]["participant_days"] == 3 * 30 + 3 * 4 / 24  # frozen clock: day 30 4h
    assert report["obligations"]["by_status"]["open"] == 2
    assert fake_randomization.callers == []  # the blinded report never asks for arms


async def test_unblinded_report_is_for_the_dsmb_only_and_split_by_arm(
        safety: RunningService, probe: BusProbe, fake_randomization: FakeRandomization) -> None:
    await _allocate(safety, probe, fake_randomization)
    url = "/v1/reports/unblinded"
    for role in Role:
        if role is not Role.DSMB:
            response = await safety.client.get(url, headers=safety.as_role(role))
            assert response.status_code == 403, role
    assert fake_randomization.callers == []

    dsmb = headers_for(safety.home, Role.DSMB, subject="dsmb-chair",
                       audience=["safety", "randomization"])
    response = await safety.client.get(url, headers=dsmb)
    assert response.status_code == 200, response.text
    report = response.json()
    assert [c.subject for c in fake_randomization.callers] == ["dsmb-chair"]  # token forwarded
    assert report["by_arm"]["personalized"]["counts"]["serious"] == 1
    assert report["by_arm"]["personalized"]["participants"] == 1
    assert report["by_arm"]["non_personalized"]["counts"]["events"] == 2
    assert report["by_arm"]["non_personalized"]["counts"]["serious"] == 0
    assert report["by_arm_and_module"]["non_personalized"]["EMDI"]["counts"]["events"] == 1
    assert [(s["participant"], s["arm"]) for s in report["sae_listing"]] == [
        ("PP-001", "personalized")]
    alias = await safety.client.get("/v1/reports/dsmb", headers=dsmb)
    assert alias.json()["by_arm"] == report["by_arm"]

    only_safety = safety.as_role(Role.DSMB)  # a token the randomization service must refuse
    refused = await safety.client.get(url, headers=only_safety)
    assert refused.status_code == 502 and refused.json()["field"] == "randomization"

    fake_randomization.allocations.append({"record": "PP-004", "module": "PERT", "arm": None,
                                           "allocated_at": ALLOCATED_AT.isoformat()})
    incomplete = await safety.client.get(url, headers=dsmb)
    assert incomplete.status_code == 502 and "PP-004" in incomplete.json()["detail"]

    safety.deps.config.randomization_url = "http://127.0.0.1:9"  # randomization is down
    down = await safety.client.get(url, headers=dsmb)
    assert down.status_code == 503
    assert down.json()["field"] == "randomization" and "randomization" in down.json()["detail"]

    actions = assert_audit_verified_and_blind(safety)  # no arm anywhere in the chain
    assert actions.count("report.unblinded") == 2
    [first, _] = [e for e in audit_entries(safety) if e.action == "report.unblinded"]
    assert first.actor == "dsmb-chair" and "arm_map_hmac" in (first.after or "")
    assert_arm_map_digest_is_keyed(json.loads(first.after or "{}"), safety)


def assert_arm_map_digest_is_keyed(after: dict, safety: RunningService) -> None:
    """A monitor who knows some arms cannot test guesses for the rest against the audit
    entry: the digest is an HMAC under the service's key, not a SHA-256 of the arm map.
    (Before: `arm_map_sha256` = SHA-256 of the sorted (record, arm) list, found in a few
    dozen tries.)"""
    arm_map = sorted((record, arm) for record, (_module, arm) in PARTICIPANTS.items())
    plain = hashlib.sha256(audit.canonical_json(arm_map).encode()).hexdigest()
    every_guess = {hashlib.sha256(audit.canonical_json(sorted(zip(
        PARTICIPANTS, arms, strict=True))).encode()).hexdigest()
        for arms in itertools.product(("personalized", "non_personalized"), repeat=3)}
    key: DigestKey = safety.deps.digest_key
    assert after["arm_map_hmac"] not in every_guess and after["arm_map_hmac"] != plain
    assert after["digest_key_id"] == key.key_id
    assert after["arm_map_hmac"] == key.digest(arm_map)  # the key holder can still prove it
    other = DigestKey(os.urandom(32), source="another deployment")
    assert other.digest(arm_map) != after["arm_map_hmac"]
