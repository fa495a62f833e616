"""Follow-ups are new versions of the same case: earlier versions stay readable, each has
a reason, significant new information restarts the clocks the protocol says, all audited."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.core.db import unit_of_work
from tests.support.harness import RunningService

from .safety_support import (
    AWARE,
    FrozenClock,
    assert_audit_verified_and_blind,
    criteria,
    sae_body,
    sqlite_only,
)


async def test_follow_ups_version_the_case_and_restart_clocks(safety: RunningService,
                                                              clock: FrozenClock) -> None:
    so = safety.as_role("safety_officer", subject="dr-safety")
    # Serious and related, but expected: only the 24-hour sponsor clock runs.
    case = (await safety.client.post("/v1/adverse-events", headers=so,
                                     json=sae_body(verbatim_term="Sleep disturbance"))).json()
    assert [o["rule_key"] for o in case["obligations"]] == ["sae_to_sponsor"]
    url = f"/v1/adverse-events/{case['case_id']}/follow-ups"

    clock.advance(hours=2)
    learned = clock.at - timedelta(hours=1)
    second = await safety.client.post(url, headers=so, json={
        "reason": "investigator judges it unexpected in this intensity",
        "received_at": learned.isoformat(), "changes": {"expected": False}})
    assert second.status_code == 201, second.text
    v2 = second.json()
    assert v2["current_version"] == 2 and v2["assessment"]["susar"] is True
    ethics = [o for o in v2["obligations"] if o["rule_key"] == "susar_to_ethics"]
    assert len(ethics) == 1 and ethics[0]["version"] == 2 and not ethics[0]["follow_up"]
    assert datetime.fromisoformat(ethics[0]["started_at"]) == learned

    clock.advance(hours=2)
    third = await safety.client.post(url, headers=so, json={
        "reason": "now life-threatening", "changes": {"seriousness": {"life_threatening": True}}})
    v3 = third.json()
    restarted = [o for o in v3["obligations"] if o["follow_up"]]
    assert [(o["rule_key"], o["version"]) for o in restarted] == [("susar_to_ethics", 3)]
    assert datetime.fromisoformat(restarted[0]["deadline_at"]) == clock.at + timedelta(days=15)
    assert len([o for o in v3["obligations"] if o["rule_key"] == "sae_to_sponsor"]) == 1

    versions = (await safety.client.get(f"/v1/adverse-events/{case['case_id']}/versions",
                                        headers=so)).json()
    assert [v["number"] for v in versions] == [1, 2, 3]
    assert [v["reason"] for v in versions] == [
        "initial report", "investigator judges it unexpected in this intensity",
        "now life-threatening"]
    assert versions[0]["event"]["expected"] is None  # the first version is unchanged
    assert versions[0]["event"]["seriousness"] == criteria(hospitalisation=True)
    assert versions[2]["event"]["seriousness"]["life_threatening"] is True
    assert datetime.fromisoformat(versions[0]["received_at"]) == AWARE
    assert {v["recorded_by"] for v in versions} == {"dr-safety"}

    actions = assert_audit_verified_and_blind(safety)
    assert actions.count("case.created") == 1 and actions.count("case.versioned") == 2
    with pytest.raises(DBAPIError), unit_of_work(safety.kernel.engine) as session:
        session.execute(text("UPDATE safety_case_version SET reason = 'rewritten'"))


@sqlite_only
async def test_refused_follow_ups_name_the_field_and_change_nothing(safety: RunningService,
                                                                    clock: FrozenClock) -> None:
    so = safety.as_role("safety_officer")
    case = (await safety.client.post("/v1/adverse-events", headers=so, json=sae_body())).json()
    url = f"/v1/adverse-events/{case['case_id']}/follow-ups"
    refused = {
        "reason": {"changes": {"outcome": "recovered"}},
        "changes": {"reason": "nothing new", "changes": {"outcome": "recovering"}},
        "changes.severity": {"reason": "typo", "changes": {"severity": "dreadful"}},
        "changes.outcome": {"reason": "died", "changes": {"seriousness": {"death": True}}},
        "participant": {"reason": "moved", "changes": {"participant": "PP-999"}},
        "received_at": {"reason": "later", "changes": {"outcome": "recovered"},
                        "received_at": (clock.at + timedelta(days=1)).isoformat()},
    }
    for field, body in refused.items():
        response = await safety.client.post(url, headers=so, json=body)
        assert response.status_code == 422, (field, response.text)
        problem = response.json()
        assert field in {problem.get("field"), *(e["field"] for e in problem.get("errors", []))}
    blank = await safety.client.post(url, headers=so, json={"reason": "  ", "changes": {"grade": 3}})
    assert blank.status_code == 422 and blank.json()["field"] == "reason"
    missing = await safety.client.post("/v1/adverse-events/ae-nope/follow-ups", headers=so,
                                       json={"reason": "x", "changes": {"grade": 3}})
    assert missing.status_code == 404
    assert (await safety.client.post(url, headers=safety.as_role("monitor"),
                                     json={"reason": "x", "changes": {"grade": 3}})).status_code == 403
    got = (await safety.client.get(f"/v1/adverse-events/{case['case_id']}", headers=so)).json()
    assert got["current_version"] == 1 and len(got["versions"]) == 1
